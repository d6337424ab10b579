"""Where a relative path parameter points: the current directory first, then the package's share.

Nodes started by ``ros2 launch`` run in whatever directory launch was started from, so a path
like the parameter files' ``checkpoints/seg_default.safetensors`` is looked up in the working
directory (a user's own file wins) and then in the installed package's share, where the shipped
checkpoints are. Absolute paths are taken as they are.
"""
from __future__ import annotations

from pathlib import Path


def resolve_path(value: str | Path, share: str | Path | None) -> Path:
    """``value`` as an existing path; FileNotFoundError names every place that was tried."""
    path = Path(value).expanduser()
    if path.is_absolute():
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        return path
    tried = [Path.cwd() / path] + ([Path(share) / path] if share is not None else [])
    for candidate in tried:
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{value} not found: tried {', '.join(str(candidate) for candidate in tried)}")
