"""Training, evaluation and routing analysis of the segmentation model.

* :mod:`.seg_trainer`: ``pointmoe train seg`` (config, loop, checkpoints, TensorBoard, DDP);
* :mod:`.evaluate` (command :mod:`.eval_cli`): ``pointmoe eval seg`` (seen and zero-shot scores
  per dataset);
* :mod:`.analyze` (command :mod:`.analyze_cli`): ``pointmoe analyze routing`` (what the experts learned);
* :mod:`.losses`, :mod:`.metrics`, :mod:`.distributed`, :mod:`.datasets`: the parts they share
  (checkpoint files: :mod:`pointmoe_core.common.checkpoint`).
"""
