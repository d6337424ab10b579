"""Class-name lists per dataset: the taxonomy each dataset's labels index and the text head reads.

Real datasets follow Pointcept's configs (the label order of its preprocessed data), with
underscores and hyphens written as spaces because the names are also CLIP prompts
("construction vehicle", not "construction_vehicle"). The synthetic domains share some names on
purpose ("floor", "table", "person"), and others are close in meaning ("floor"/"road"), so that
zero-shot evaluation through class names means something.
"""
from __future__ import annotations

from pointmoe_core.data.scenes import TABLETOP_CLASSES

SCANNET20_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
    "bathtub", "otherfurniture",
)
"""ScanNet benchmark's 20 classes (Pointcept ``segment20``)."""

SCANNET20_NYU40_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
"""NYU40 id of each ScanNet20 class (ScanNet's ``VALID_CLASS_IDS_20``); other NYU40 ids are ignored."""

SCANNET200_CLASSES = (
    "wall", "chair", "floor", "table", "door", "couch", "cabinet", "shelf", "desk", "office chair",
    "bed", "pillow", "sink", "picture", "window", "toilet", "bookshelf", "monitor", "curtain", "book",
    "armchair", "coffee table", "box", "refrigerator", "lamp", "kitchen cabinet", "towel", "clothes",
    "tv", "nightstand", "counter", "dresser", "stool", "cushion", "plant", "ceiling", "bathtub",
    "end table", "dining table", "keyboard", "bag", "backpack", "toilet paper", "printer", "tv stand",
    "whiteboard", "blanket", "shower curtain", "trash can", "closet", "stairs", "microwave", "stove",
    "shoe", "computer tower", "bottle", "bin", "ottoman", "bench", "board", "washing machine",
    "mirror", "copier", "basket", "sofa chair", "file cabinet", "fan", "laptop", "shower", "paper",
    "person", "paper towel dispenser", "oven", "blinds", "rack", "plate", "blackboard", "piano",
    "suitcase", "rail", "radiator", "recycling bin", "container", "wardrobe", "soap dispenser",
    "telephone", "bucket", "clock", "stand", "light", "laundry basket", "pipe", "clothes dryer",
    "guitar", "toilet paper holder", "seat", "speaker", "column", "bicycle", "ladder",
    "bathroom stall", "shower wall", "cup", "jacket", "storage bin", "coffee maker", "dishwasher",
    "paper towel roll", "machine", "mat", "windowsill", "bar", "toaster", "bulletin board",
    "ironing board", "fireplace", "soap dish", "kitchen counter", "doorframe",
    "toilet paper dispenser", "mini fridge", "fire extinguisher", "ball", "hat", "shower curtain rod",
    "water cooler", "paper cutter", "tray", "shower door", "pillar", "ledge", "toaster oven", "mouse",
    "toilet seat cover dispenser", "furniture", "cart", "storage container", "scale", "tissue box",
    "light switch", "crate", "power outlet", "decoration", "sign", "projector", "closet door",
    "vacuum cleaner", "candle", "plunger", "stuffed animal", "headphones", "dish rack", "broom",
    "guitar case", "range hood", "dustpan", "hair dryer", "water bottle", "handicap bar", "purse",
    "vent", "shower floor", "water pitcher", "mailbox", "bowl", "paper bag", "alarm clock",
    "music stand", "projector screen", "divider", "laundry detergent", "bathroom counter", "object",
    "bathroom vanity", "closet wall", "laundry hamper", "bathroom stall door", "ceiling light",
    "trash bin", "dumbbell", "stair rail", "tube", "bathroom cabinet", "cd case", "closet rod",
    "coffee kettle", "structure", "shower head", "keyboard piano", "case of water bottles",
    "coat rack", "storage organizer", "folded chair", "fire alarm", "power strip", "calendar",
    "poster", "potted plant", "luggage", "mattress",
)
"""ScanNet200 benchmark classes (Pointcept ``segment200``)."""

S3DIS_CLASSES = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
    "bookcase", "board", "clutter",
)

STRUCTURED3D_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "picture",
    "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "ceiling", "refrigerator",
    "television", "nightstand", "sink", "lamp", "otherstructure", "otherfurniture", "otherprop",
)

MATTERPORT3D_CLASSES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
    "bathtub", "other", "ceiling",
)

SEMANTIC_KITTI_CLASSES = (
    "car", "bicycle", "motorcycle", "truck", "other vehicle", "person", "bicyclist",
    "motorcyclist", "road", "parking", "sidewalk", "other ground", "building", "fence",
    "vegetation", "trunk", "terrain", "pole", "traffic sign",
)
"""semantic-kitti.yaml training ids 1..19 (0, "unlabeled", is ignored), in that order."""

NUSCENES_CLASSES = (
    "barrier", "bicycle", "bus", "car", "construction vehicle", "motorcycle", "pedestrian",
    "traffic cone", "trailer", "truck", "driveable surface", "other flat", "sidewalk", "terrain",
    "manmade", "vegetation",
)
"""nuScenes-lidarseg challenge classes (16), the targets of its 32 -> 16 learning map."""

INDOOR_ROOM_CLASSES = ("floor", "wall", "ceiling", "table", "chair", "shelf", "object", "person")
OUTDOOR_LIDAR_CLASSES = (
    "road", "sidewalk", "terrain", "building", "car", "pole", "vegetation", "person",
)

DATASET_CLASSES: dict[str, tuple[str, ...]] = {
    "ScanNet": SCANNET20_CLASSES,
    "ScanNet200": SCANNET200_CLASSES,
    "S3DIS": S3DIS_CLASSES,
    "Structured3D": STRUCTURED3D_CLASSES,
    "Matterport3D": MATTERPORT3D_CLASSES,
    "SemanticKITTI": SEMANTIC_KITTI_CLASSES,
    "nuScenes": NUSCENES_CLASSES,
    "synthetic_indoor": INDOOR_ROOM_CLASSES,
    "synthetic_outdoor": OUTDOOR_LIDAR_CLASSES,
    "synthetic_tabletop": TABLETOP_CLASSES,
}
"""Dataset name (the sample's ``dataset``) -> its class names; the names of the point_moe fork."""
