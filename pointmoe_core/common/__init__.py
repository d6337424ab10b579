"""The bottom layer: what every feature folder uses and none of them owns.

* :mod:`.config`: ``YamlConfig``, the one base of every dataclass config (YAML + ``key=value``);
* :mod:`.checkpoint`: atomic checkpoint files with sha256 sidecars, ``latest``, RNG capture, the
  rotation and resume every training run uses; :mod:`.training`: its log and non-finite guard;
* :mod:`.device`: the ``"auto"`` device choice;
* :mod:`.workspace`: the Ravens workspace bounds;
* :mod:`.pose_sequence` (with :mod:`.rotation`): ``PoseSequence``, the planner's output type;
* :mod:`.moe`: top-k dispatch and the load-balance loss, shared by Point-MoE and the LLM MoE;
* :mod:`.text_models`: locating and loading the offline MiniLM text model;
* :mod:`.paths`, :mod:`.cli_args`: path parameters, argument checks of the command line.

It imports no other folder of ``pointmoe_core`` (test/test_architecture.py checks).
"""
