"""Datasets, transforms and generated scenes that share one sample layout.

* :mod:`.sample`: the sample dict, ``InputSpec`` (INDOOR / OUTDOOR features) and ``SegDataset``;
* :mod:`.taxonomy`: class names per dataset;
* loaders :mod:`.pointcept`, :mod:`.semantic_kitti`, :mod:`.nuscenes`, :mod:`.folder`, all by name
  in :mod:`.datasets` (``build_dataset``);
* :mod:`.transforms`: augmentations, GridSample, ``default_pipeline``, ``collate``;
* :mod:`.sampling`: ``MixedDataset`` + ``MixedBatchSampler`` (mixed or single-dataset batches, DDP shards);
* :mod:`.synthetic` (with :mod:`.raycast`): generated indoor, outdoor and tabletop domains;
* :mod:`.scenes`: the tabletop generator of the demo; :mod:`.sources`: every cloud source by name;
* :mod:`.preprocess`: centring, colour scaling, GridSample, normals (training and inference);
* :mod:`.demo_frames`: planner training frames from ``pointmoe sim demos`` folders.
"""
