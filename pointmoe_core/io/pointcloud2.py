"""The `PointCloud` container and its codec to and from `sensor_msgs/PointCloud2`.

Messages are duck-typed: rclpy's `sensor_msgs.msg.PointCloud2` (data is `array.array('B')`) and
rosbags' (data is a uint8 ndarray) both work. Decoding views `data` in place through a structured
numpy dtype whose itemsize is `point_step` and copies only the columns asked for.
"""
from __future__ import annotations

import array
import functools
import sys
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from typing import Any, Callable, Iterable

import numpy as np

from ..common.reductions import rows_all
from .bags import jazzy_typestore

# PointField.datatype -> numpy type code (byte order added per message).
_NUMPY_TYPE = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
_POINTFIELD_TYPE = {np.dtype(code): datatype for datatype, code in _NUMPY_TYPE.items()}
FLOAT32 = 7

ATTRIBUTES = ("rgb", "intensity", "normals", "score", "label", "ring")
"""Optional `PointCloud` attributes, in the order they are written to a PointCloud2
(4-byte floats first, so that narrower integers only pad the end of a point)."""

# Alternative PointField groups an attribute is read from (first complete group wins);
# the first group is the one written.
_FIELD_NAMES = {
    "rgb": [("rgb",), ("rgba",)],
    "intensity": [("intensity",), ("remission",), ("i",)],
    "normals": [("normal_x", "normal_y", "normal_z")],
    "label": [("label",)],
    "ring": [("ring",)],
    "score": [("score",)],
}


class CloudFormatError(ValueError):
    """A PointCloud2 message whose layout is invalid or lacks what was asked of it."""


# float32 resolves about 1 mm at 10 km from the origin; further out (UTM or ECEF map frames) 1-5 cm
# voxels start to merge, so such clouds are re-centred in float64 before anything becomes float32
RECENTRE_ABOVE_M = 1e4
# no Earth-fixed frame reaches 100,000 km: coordinates beyond it are corrupt values, not places
MAX_COORDINATE_M = 1e8


def recentre_origin(xyz: np.ndarray, plausible: np.ndarray | None = None) -> np.ndarray | None:
    """A whole-metre float64 offset to subtract from ``xyz`` when its points lie far from their frame's
    origin (the median beyond ``RECENTRE_ABOVE_M``), else None. Whole metres keep the voxel grid
    where it was; rows that are not finite or beyond ``MAX_COORDINATE_M`` do not move the median.
    ``plausible``: the mask of the other rows where the caller has it already."""
    if plausible is None:
        plausible = rows_all(np.isfinite(xyz) & (np.abs(xyz) <= MAX_COORDINATE_M))
    if not plausible.any():
        return None
    plausible = xyz if plausible.all() else xyz[plausible]  # no copy of a clean cloud
    # the median lies inside the bounding box: a box near the origin needs no median (10x its cost)
    if max(-float(plausible.min()), float(plausible.max())) <= RECENTRE_ABOVE_M:
        return None
    centre = np.median(plausible.astype(np.float64), axis=0)
    return np.round(centre) if np.abs(centre).max() > RECENTRE_ABOVE_M else None


def recentred_note(origin: np.ndarray) -> str:
    """The warning that says a cloud was re-centred."""
    return f"coordinates around {np.asarray(origin).tolist()} m: re-centred in float64 before float32"


@dataclass
class PointCloud:
    """N points as numpy arrays; every optional attribute has N rows.

    xyz (N,3) float32, rgb (N,3) uint8, intensity (N,) float32, normals (N,3) float32,
    label (N,) integer, ring (N,) integer, score (N,) float32. Float attributes are cast
    to float32; integer attributes keep their integer type. ``origin`` (3,) float64, when set, is
    where ``xyz``'s zero lies in the frame: a far-off cloud (UTM-like map frames) keeps its offset
    there, in float64, so that ``xyz`` stays precise in float32 (``cloud_from_msg(recentre=True)``).
    """

    xyz: np.ndarray
    rgb: np.ndarray | None = None
    intensity: np.ndarray | None = None
    normals: np.ndarray | None = None
    label: np.ndarray | None = None
    ring: np.ndarray | None = None
    score: np.ndarray | None = None
    origin: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.xyz = np.asarray(self.xyz, dtype=np.float32)
        if self.origin is not None:
            self.origin = np.asarray(self.origin, np.float64).reshape(3)
        if self.xyz.ndim != 2 or self.xyz.shape[1] != 3:
            raise ValueError(f"xyz must have shape (N, 3), got {self.xyz.shape}")
        n = len(self.xyz)
        for name in ATTRIBUTES:
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value)
            if name in ("intensity", "normals", "score"):
                value = value.astype(np.float32, copy=False)
            elif name == "rgb" and value.dtype != np.uint8:
                raise TypeError(f"rgb must be uint8 (0..255), got {value.dtype}")
            elif name in ("label", "ring"):
                if not np.issubdtype(value.dtype, np.integer):
                    raise TypeError(f"{name} must be an integer array, got {value.dtype}")
                value = value.astype(value.dtype.newbyteorder("="), copy=False)
            expected = (n, 3) if name in ("rgb", "normals") else (n,)
            if value.shape != expected:
                raise ValueError(f"{name} must have shape {expected} to match xyz, got {value.shape}")
            setattr(self, name, value)

    def __len__(self) -> int:
        return len(self.xyz)

    def __getitem__(self, index: np.ndarray | slice) -> PointCloud:
        """The points selected by a boolean mask, an index array or a slice."""
        return PointCloud(**{f.name: None if (v := getattr(self, f.name)) is None else v[index]
                             for f in dataclass_fields(self) if f.name != "origin"}, origin=self.origin)

    def frame_xyz(self) -> np.ndarray:
        """The points in their frame: ``xyz``, plus ``origin`` in float64 when there is one."""
        return self.xyz if self.origin is None else self.origin + self.xyz

    def attributes(self) -> tuple[str, ...]:
        """Names of the optional attributes this cloud carries."""
        return tuple(name for name in ATTRIBUTES if getattr(self, name) is not None)


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=128)
def _field_types(
    fields: tuple[tuple[str, int, int, int], ...], point_step: int, byteorder: str
) -> dict[str, tuple[int, np.dtype]]:
    """Validate a field layout and map each name to (offset, dtype of its first element).

    Cached because a topic repeats the same layout in every message.
    """
    types: dict[str, tuple[int, np.dtype]] = {}
    for name, offset, datatype, count in fields:
        if count == 0:
            continue  # a field of no elements holds no data, wherever its offset points
        if datatype not in _NUMPY_TYPE:
            raise CloudFormatError(
                f"field {name!r} has unknown datatype {datatype} (PointField datatypes are 1..8)"
            )
        dtype = np.dtype(_NUMPY_TYPE[datatype]).newbyteorder(byteorder)
        end = offset + dtype.itemsize * count
        if end > point_step:
            raise CloudFormatError(
                f"field {name!r} (offset {offset}, {count} x {dtype.itemsize} bytes) extends "
                f"beyond point_step {point_step}"
            )
        types.setdefault(name, (offset, dtype))
    missing = [axis for axis in "xyz" if axis not in types]
    if missing:
        raise CloudFormatError(f"missing coordinate field(s) {missing}: a PointCloud2 needs x, y and z "
                               "(with count >= 1)")
    return types


def _point_rows(msg: Any) -> np.ndarray:
    """View `data` as bytes of whole points: flat, or (height, width * point_step) without row padding."""
    height, width, point_step, row_step = msg.height, msg.width, msg.point_step, msg.row_step
    if row_step < width * point_step:
        raise CloudFormatError(
            f"row_step {row_step} is smaller than width * point_step = {width} * {point_step}"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if len(data) != height * row_step:
        raise CloudFormatError(
            f"data length {len(data)} does not match height * row_step = {height} * {row_step} "
            f"(width * height * point_step = {width * height * point_step} without row padding)"
        )
    if row_step == width * point_step:  # no row padding: one flat run of points (the common case)
        return data
    return data.reshape(height, row_step)[:, : width * point_step]


@functools.lru_cache(maxsize=128)
def _columns_dtype(point_step: int, columns: tuple[tuple[int, np.dtype], ...]) -> np.dtype:
    """A structured dtype over one point (itemsize point_step) exposing columns c0, c1, ..."""
    return np.dtype({
        "names": [f"c{i}" for i in range(len(columns))],
        "formats": [dtype for _, dtype in columns],
        "offsets": [offset for offset, _ in columns],
        "itemsize": point_step,
    })


def _read_columns(
    rows: np.ndarray, point_step: int, columns: tuple[tuple[int, np.dtype], ...], out_dtype: Any
) -> np.ndarray:
    """Copy (offset, dtype) columns of every point into a contiguous (N, len(columns)) array."""
    view = rows.view(_columns_dtype(point_step, columns))
    out = np.empty(view.shape + (len(columns),), dtype=out_dtype)
    # One strided copy per column: faster than one (N, k) copy, whose inner loop would run over k.
    for i, name in enumerate(view.dtype.names):
        out[..., i] = view[name]
    return out.reshape(-1, len(columns))


def _unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """0x00RRGGBB uint32 -> (N, 3) uint8."""
    return np.stack([(packed >> shift) & 0xFF for shift in (16, 8, 0)], axis=1).astype(np.uint8)


def _attribute_fields(attribute: str, types: dict[str, tuple[int, np.dtype]]) -> tuple[str, ...] | None:
    """The first complete field group ``attribute`` is read from, or None."""
    return next((group for group in _FIELD_NAMES[attribute] if all(n in types for n in group)), None)


def present_attributes(msg: Any, wanted: Iterable[str] = ATTRIBUTES) -> tuple[str, ...]:
    """Those of ``wanted`` that ``msg`` has fields for: what to pass as ``cloud_from_msg(fields=...)``
    to decode only what a consumer uses (a field it ignores cannot then fail it)."""
    layout = tuple((f.name, f.offset, f.datatype, f.count) for f in msg.fields)
    types = _field_types(layout, msg.point_step, ">" if msg.is_bigendian else "<")
    return tuple(attribute for attribute in wanted if _attribute_fields(attribute, types) is not None)


def cloud_from_msg(
    msg: Any,
    *,
    fields: Iterable[str] | None = None,
    drop_invalid: bool = True,
    return_indices: bool = False,
    recentre: bool = False,
) -> PointCloud | tuple[PointCloud, np.ndarray]:
    """Decode a PointCloud2 (rclpy or rosbags) into a `PointCloud`.

    fields: optional attributes to decode (names from `ATTRIBUTES`); xyz is always decoded.
        None decodes every attribute the message has; naming one it lacks raises CloudFormatError.
    drop_invalid: drop points whose x, y or z is NaN or Inf. Only messages with is_dense=False are
        scanned: is_dense=True promises finite points, and skipping the scan keeps the common LiDAR
        path at copy speed (consumers that cannot trust the sender, like the Segmenter, check again).
        Organized clouds (height > 1) come out row-major; keep drop_invalid=False to preserve
        their H*W grid.
    return_indices: also return `kept`, the int64 indices (into the message's height*width points)
        of the points that were kept, e.g. to write per-point results back onto the original grid.
    recentre: read x, y, z in float64 and, when the cloud lies far from its frame's origin
        (`recentre_origin`), keep the whole-metre offset in `cloud.origin` and `xyz` relative to it.

    Raises CloudFormatError for an invalid layout (missing x/y/z, a field beyond point_step,
    an unknown datatype, row_step < width * point_step, data length != height * row_step, a float
    label or ring field). Fields with count 0 hold nothing and are ignored.
    """
    wanted = ATTRIBUTES if fields is None else tuple(fields)
    unknown = sorted(set(wanted) - set(ATTRIBUTES))
    if unknown:
        raise ValueError(f"unknown attribute(s) {unknown}; choose from {ATTRIBUTES}")
    point_step = msg.point_step
    layout = tuple((f.name, f.offset, f.datatype, f.count) for f in msg.fields)
    types = _field_types(layout, point_step, ">" if msg.is_bigendian else "<")
    rows = _point_rows(msg)
    xyz_columns = (types["x"], types["y"], types["z"])
    origin = None
    if recentre:
        xyz = _read_columns(rows, point_step, xyz_columns, np.float64)
        origin = recentre_origin(xyz)
        values = {"xyz": xyz if origin is None else xyz - origin}
    else:
        values = {"xyz": _read_columns(rows, point_step, xyz_columns, np.float32)}
    for attribute in wanted:
        names = _attribute_fields(attribute, types)
        if names is None:
            if fields is not None:
                raise CloudFormatError(
                    f"{attribute!r} was requested but the message has none of the fields "
                    f"{_FIELD_NAMES[attribute]}"
                )
            continue
        columns = tuple(types[name] for name in names)
        if attribute == "rgb":
            offset, dtype = columns[0]
            if dtype.itemsize != 4:
                raise CloudFormatError(f"field {names[0]!r} must have a 4-byte datatype (packed 0x00RRGGBB)")
            # Packed FLOAT32 or UINT32 alike: reinterpret the same 4 bytes as uint32.
            as_uint32 = ((offset, np.dtype("u4").newbyteorder(dtype.byteorder)),)
            values["rgb"] = _unpack_rgb(_read_columns(rows, point_step, as_uint32, np.uint32)[:, 0])
        else:
            integer = attribute in ("label", "ring")
            if integer and columns[0][1].kind == "f":
                raise CloudFormatError(f"field {names[0]!r} is {columns[0][1].name}: {attribute} must be an "
                                       "integer field")
            out_dtype = columns[0][1].newbyteorder("=") if integer else np.float32
            value = _read_columns(rows, point_step, columns, out_dtype)
            values[attribute] = value if attribute == "normals" else value[:, 0]

    cloud = PointCloud(**values, origin=origin)
    kept = None
    if drop_invalid and not msg.is_dense:
        finite = np.isfinite(cloud.xyz)
        if not finite.all():
            kept = np.flatnonzero(rows_all(finite))
            cloud = cloud[kept]
    if not return_indices:
        return cloud
    return cloud, np.arange(len(cloud)) if kept is None else kept


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------


def _byte_array(data: np.ndarray) -> array.array:
    # rclpy stores an array('B') as is but copies any other type byte by byte in Python.
    out = array.array("B")
    out.frombytes(data)
    return out


@dataclass(frozen=True)
class _MessageTypes:
    """The message classes of one flavour (rclpy or rosbags) and how it stores `data`."""

    cloud: type
    field: type
    header: type
    time: type
    wrap_data: Callable[[np.ndarray], Any]

    def make_header(self, header: Any) -> Any:
        """None -> frame "map" at t=0; (frame_id, stamp_sec); or any header-like object."""
        if header is None:
            frame_id, sec, nanosec = "map", 0, 0
        elif isinstance(header, tuple):
            frame_id, stamp_sec = header
            sec, nanosec = divmod(round(stamp_sec * 1e9), 1_000_000_000)
        else:
            frame_id, sec, nanosec = header.frame_id, header.stamp.sec, header.stamp.nanosec
        return self.header(stamp=self.time(sec=int(sec), nanosec=int(nanosec)), frame_id=str(frame_id))

    def make_cloud(
        self,
        header: Any,
        *,
        height: int,
        width: int,
        fields: Iterable[tuple[str, int, int, int]],
        is_bigendian: bool,
        point_step: int,
        row_step: int,
        data: np.ndarray,
        is_dense: bool,
    ) -> Any:
        # rclpy's setters insist on exact Python types, hence the int()/bool() casts.
        return self.cloud(
            header=self.make_header(header),
            height=int(height),
            width=int(width),
            fields=[self.field(name=name, offset=int(offset), datatype=int(datatype), count=int(count))
                    for name, offset, datatype, count in fields],
            is_bigendian=bool(is_bigendian),
            point_step=int(point_step),
            row_step=int(row_step),
            data=self.wrap_data(data),
            is_dense=bool(is_dense),
        )


@functools.cache
def _ros_types() -> _MessageTypes:
    # Message packages only: importing them does not import rclpy.
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import PointCloud2, PointField
    from std_msgs.msg import Header

    return _MessageTypes(PointCloud2, PointField, Header, Time, _byte_array)


@functools.cache
def _rosbags_types() -> _MessageTypes:
    types = jazzy_typestore().types
    return _MessageTypes(
        types["sensor_msgs/msg/PointCloud2"],
        types["sensor_msgs/msg/PointField"],
        types["std_msgs/msg/Header"],
        types["builtin_interfaces/msg/Time"],
        np.asarray,
    )


def _message_types(msg_class: str | type | None) -> _MessageTypes:
    if msg_class is None:
        try:
            return _ros_types()
        except ImportError:  # no ROS 2 wheels: pure-Python rosbags messages
            return _rosbags_types()
    if msg_class == "rosbags" or hasattr(msg_class, "__msgtype__"):
        return _rosbags_types()
    if msg_class == "ros" or isinstance(msg_class, type):
        return _ros_types()
    raise ValueError(f"msg_class must be None, 'ros', 'rosbags' or a PointCloud2 class, got {msg_class!r}")


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 -> 0x00RRGGBB uint32."""
    rgb = rgb.astype(np.uint32)
    return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


def cast_integers(values: np.ndarray, dtype: Any, why: str) -> np.ndarray:
    """Cast integers to a narrower `dtype`, refusing values it cannot hold (`why` names the limit)."""
    limits = np.iinfo(dtype)
    if len(values) and (values.min() < limits.min or values.max() > limits.max):
        raise ValueError(f"values out of range for {np.dtype(dtype)}, {why}")
    return values.astype(dtype)


def msg_from_cloud(
    cloud: PointCloud,
    header: Any = None,
    *,
    fields: Iterable[str] | None = None,
    msg_class: str | type | None = None,
    organized_shape: tuple[int, int] | None = None,
) -> Any:
    """Encode a `PointCloud` as a PointCloud2 message.

    header: None (frame "map", zero stamp), a (frame_id, stamp_sec) tuple, or a Header-like object.
    fields: optional attributes to write (names from `ATTRIBUTES`); x, y, z are always written.
        None writes every attribute the cloud has. x, y, z are FLOAT32, or FLOAT64 when the cloud has an
        `origin` (they hold origin + xyz). rgb is written as RViz expects: a FLOAT32 field
        holding the bits 0x00RRGGBB; label and ring keep their integer type ((u)int64 -> (u)int32).
    msg_class: None (rclpy's sensor_msgs.msg.PointCloud2 when the ROS 2 wheels are installed, else
        rosbags'), "ros", "rosbags", or one of those PointCloud2 classes.
    organized_shape: (height, width) of an organized cloud, e.g. from a depth image; default (1, N).
    """
    attributes = cloud.attributes() if fields is None else tuple(fields)
    absent = [name for name in attributes if name not in ATTRIBUTES or getattr(cloud, name) is None]
    if absent:
        raise ValueError(f"cannot write {absent}: this cloud carries {cloud.attributes()}")
    height, width = (1, len(cloud)) if organized_shape is None else organized_shape
    if height * width != len(cloud):
        raise ValueError(f"organized_shape {organized_shape} does not hold {len(cloud)} points")

    xyz = cloud.frame_xyz()  # float64 where the cloud carries an origin: its offset stays exact
    columns = {axis: xyz[:, i] for i, axis in enumerate("xyz")}
    for attribute in ATTRIBUTES:  # fixed order, whatever the order asked
        if attribute not in attributes:
            continue
        value = getattr(cloud, attribute)
        if attribute == "rgb":
            value = _pack_rgb(value)
        elif attribute in ("label", "ring") and value.dtype.itemsize > 4:
            value = cast_integers(value, f"{value.dtype.kind}4", f"as PointField has no 64-bit {attribute}")
        names = _FIELD_NAMES[attribute][0]
        columns.update(zip(names, value.T if value.ndim == 2 else [value]))

    # align=True lays fields out like a C struct, so every field sits at a multiple of its size.
    record_dtype = np.dtype([(name, column.dtype) for name, column in columns.items()], align=True)
    records = np.zeros(len(cloud), record_dtype)  # zeros: padding bytes are deterministic
    for name, column in columns.items():
        records[name] = column
    return _message_types(msg_class).make_cloud(
        header,
        height=height,
        width=width,
        fields=[(name, record_dtype.fields[name][1],
                 FLOAT32 if name == "rgb" else _POINTFIELD_TYPE[column.dtype], 1)
                for name, column in columns.items()],
        is_bigendian=sys.byteorder == "big",
        point_step=record_dtype.itemsize,
        row_step=record_dtype.itemsize * width,
        data=records.view(np.uint8),
        is_dense=np.isfinite(cloud.xyz).all(),
    )


def convert_cloud_msg(msg: Any, msg_class: str | type = "rosbags") -> Any:
    """The same PointCloud2 as another flavour (rclpy <-> rosbags): header, fields and bytes unchanged."""
    return _message_types(msg_class).make_cloud(
        msg.header,
        height=msg.height,
        width=msg.width,
        fields=[(f.name, f.offset, f.datatype, f.count) for f in msg.fields],
        is_bigendian=msg.is_bigendian,
        point_step=msg.point_step,
        row_step=msg.row_step,
        data=np.frombuffer(msg.data, dtype=np.uint8),
        is_dense=msg.is_dense,
    )
