"""The 3D-MoE planner on a tiny random LLM: what each stage trains, saving and reloading exactly,
valid plans, answers, the routing report's 3D tokens, and the planner factory."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from pointmoe_core.common import moe as moe_module
from pointmoe_core.common.checkpoint import CheckpointError, save_checkpoint
from pointmoe_core.common.pose_sequence import WORKSPACE_BOUNDS, PickPlace, PoseSequence, normalize_xyz
from pointmoe_core.plan import planner as planner_module
from pointmoe_core.plan.interface import load_planner
from pointmoe_core.plan.llm_moe import moe_layers, reset_routing_stats, routing_report
from pointmoe_core.plan.lora import trainable_parameter_report
from pointmoe_core.plan.moe_planner import (
    NEXT_STEP_QUESTION,
    MoEPlanner,
    MoEPlannerConfig,
    ObjectPointer,
    PoseCondition,
)
from pointmoe_core.plan.planner import PoseDiTPlanner, PoseDiTPlannerConfig
from pointmoe_core.plan.pose_decoding import grounding_targets, pad_plans
from pointmoe_core.plan.pose_dit import starting_noise
from pointmoe_core.plan.scene_encoder import pad_scenes
from pointmoe_core.plan.train_planner import PlannerTrainConfig
from pointmoe_core.sim.language import ObjectFact, next_step_qa

TINY = "config/train/planner_tiny.yaml"


@pytest.fixture
def config():
    return PlannerTrainConfig.load(TINY).planner


def cloud(seed: int = 0):
    """Three objects (instance ids 3, 4, 5) on a background (-1)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.4, -0.2, 0.02], [0.5, 0.1, 0.02], [0.6, 0.3, 0.02]])
    xyz = np.concatenate([rng.normal(c, 0.01, (60, 3)) for c in centres] + [rng.uniform(0.3, 0.7, (40, 3))])
    ids = np.concatenate([np.full(60, i) for i in (3, 4, 5)] + [np.full(40, -1)])
    rgb = rng.integers(0, 256, (len(xyz), 3), dtype=np.uint8)
    return xyz.astype(np.float32), rgb, ids


def count(params) -> int:
    return sum(p.numel() for p in params)


def test_each_stage_trains_only_its_part(config):
    planner = MoEPlanner(config)
    planner.set_stage(1)
    assert trainable_parameter_report(planner)["trainable"] == count(planner.scene.parameters())
    planner.set_stage(3)
    pose_head = [*planner.pose_dit.parameters(), *planner.pointer.parameters()]
    assert trainable_parameter_report(planner)["trainable"] == count(pose_head)
    with pytest.raises(ValueError, match="adapt"):
        planner.set_stage(2)

    planner.adapt()
    planner.set_stage(2)
    layers = moe_layers(planner.llm)
    assert len(layers) == config.llm.num_layers and all(len(layer.experts) == 2 for layer in layers)
    trainable = [name for name, p in planner.named_parameters() if p.requires_grad]
    routers = sum(layer.router.weight.numel() for layer in layers)
    report = trainable_parameter_report(planner)
    assert report["full"] == routers + count(planner.scene.projector.parameters())
    # LoRA rank r on q, k, v, o and on each expert's gate, up, down: r * (in + out) each
    h, i, kv, r = config.llm.hidden_size, config.llm.intermediate_size, config.llm.hidden_size // 2, config.lora.r
    per_layer = r * ((h + h) + (h + kv) * 2 + (h + h)) + 2 * r * ((h + i) * 2 + (i + h))
    assert report["lora"] == config.llm.num_layers * per_layer
    assert all("lora_" in n or ".router." in n or n.startswith("scene.projector.") for n in trainable)
    # stage 3 freezes the adapters too; frozen parts stay in eval mode while training
    planner.set_stage(3)
    planner.train()
    assert trainable_parameter_report(planner)["trainable"] == count(pose_head)
    assert not planner.llm.training and not planner.scene.training and planner.pose_dit.training


def test_saved_planner_reloads_with_the_same_outputs(config, tmp_path):
    torch.manual_seed(0)
    planner = MoEPlanner(config)
    planner.adapt()
    with torch.no_grad():  # adapters start as no-ops (B = 0): make them matter
        for name, param in planner.llm.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.1)
    planner.eval()
    planner.save(tmp_path / "planner")
    loaded = MoEPlanner.from_checkpoint(tmp_path)  # a stage folder: its planner/ is found
    assert loaded.adapted and not loaded.training
    xyz, rgb, ids = cloud()
    for name, value in planner.trained_state().items():
        torch.testing.assert_close(loaded.trained_state()[name], value, rtol=0, atol=0, msg=name)
    plans = [p.plan(xyz, rgb, ids, "put the blocks in the bowl", generator=torch.Generator().manual_seed(3))
             for p in (planner, loaded)]
    assert plans[0].steps == plans[1].steps
    answers = [p.answer(xyz, rgb, ids, "how many blocks are there?", generator=torch.Generator().manual_seed(3))
               for p in (planner, loaded)]
    assert answers[0] == answers[1]
    # the saved LLM is not a fresh one: the adapters were loaded
    fresh = MoEPlanner(config)
    scenes = [planner.scene_objects(xyz, rgb, ids, torch.Generator().manual_seed(0))]
    with torch.no_grad():
        assert not torch.equal(fresh.condition(scenes, ["x"]).states, loaded.condition(scenes, ["x"]).states)

    other = PlannerTrainConfig.load(TINY, ["planner.llm.seed=1"]).planner
    with pytest.raises(ValueError, match="llm"):
        MoEPlanner.from_checkpoint(tmp_path, other)


def test_exported_planner_is_hash_checked(config, tmp_path):
    planner = MoEPlanner(config)
    planner.adapt()
    folder = planner.export(tmp_path / "shipped")
    sidecars = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.sha256"))
    assert sidecars == ["adapters/adapters.safetensors.sha256", "pointer.safetensors.sha256",
                        "pose_dit.safetensors.sha256", "scene_tokenizer.safetensors.sha256"]
    MoEPlanner.from_checkpoint(folder)
    weights = folder / "adapters/adapters.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="adapters.safetensors is corrupt"):
        MoEPlanner.from_checkpoint(folder)


def test_plan_answer_and_routing_by_modality(config):
    planner = MoEPlanner(config)
    planner.adapt()
    planner.eval()
    xyz, rgb, ids = cloud()
    plan, answer = planner.plan_with_answer(xyz, rgb, ids, "put the red block in the bowl.",
                                            generator=torch.Generator().manual_seed(0))
    assert isinstance(answer, str) and 1 <= len(plan) <= config.horizon
    assert plan.planner == "3d-moe" and plan.planning_time > 0
    bounds = np.array(WORKSPACE_BOUNDS)
    for step in plan.steps:
        for xyz_, quat in ((step.pick_xyz, step.pick_quat), (step.place_xyz, step.place_quat)):
            assert np.all(bounds[:, 0] <= xyz_) and np.all(xyz_ <= bounds[:, 1])
            assert np.linalg.norm(quat) == pytest.approx(1.0, abs=1e-6)
    # one answer: its 3 objects are 3D tokens in every layer, the prompt and answer text tokens
    reset_routing_stats(planner.llm)
    planner.answer(xyz, rgb, ids, "how many blocks are there?")
    report = routing_report(planner.llm)
    assert report["num_experts"] == 2
    assert all(layer["3d"]["tokens"] == 3 and layer["text"]["tokens"] > 20 for layer in report["layers"])


def test_plan_conditions_on_the_penultimate_layer(config):
    planner = MoEPlanner(config).eval()
    xyz, rgb, ids = cloud()
    scenes = [planner.scene_objects(xyz, rgb, ids, torch.Generator().manual_seed(0))]
    with torch.no_grad():
        condition = planner.condition(scenes, ["stack the blocks"])
        spliced = planner._spliced(scenes, [config.prompt.plan("stack the blocks")])
        states = planner.llm(inputs_embeds=spliced.embeds, output_hidden_states=True).hidden_states
    assert condition.states.shape[-1] == config.llm.hidden_size and condition.mask.all()
    torch.testing.assert_close(condition.states, states[config.llm.num_layers - 1])


def test_merged_adapters_and_the_cached_prompt_start_condition_alike(config):
    """Planning's two shortcuts, LoRA folded into the base weights and the prompts' common start
    run through the LLM once, give the states of the plain forward, padding included."""
    planner = MoEPlanner(config)
    planner.adapt()
    with torch.no_grad():  # LoRA's B starts at zero: give the adapters something to merge
        for name, param in planner.llm.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.1)
    planner.eval()
    scenes = [planner.scene_objects(*cloud(seed), torch.Generator().manual_seed(seed)) for seed in (0, 1)]
    instructions = ["stack the blocks", "put the red block in the bowl of the same colour as the zone."]
    with torch.no_grad():
        spliced = planner._spliced(scenes, [config.prompt.plan(i) for i in instructions])
        plain = planner._forward(spliced, planner.llm.get_decoder(), output_hidden_states=True)
        mask = spliced.attention_mask.bool()
        cached = planner.condition(scenes, instructions).states
        merged = planner.merge_adapters().condition(scenes, instructions).states
    assert not mask.all()  # the first prompt is padded
    expected = plain.hidden_states[config.condition_layer].masked_fill(~mask[..., None], 0.0)
    torch.testing.assert_close(cached, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(merged, expected, atol=1e-5, rtol=1e-4)
    assert planner.adapters_merged and not torch.equal(merged, cached)  # really merged
    with pytest.raises(ValueError, match="merged for planning"):
        planner.set_stage(2)


def _merged_planner(config) -> MoEPlanner:
    """An adapted planner whose (nonzero) LoRA adapters are merged for planning."""
    planner = MoEPlanner(config)
    planner.adapt()
    with torch.no_grad():
        for name, param in planner.llm.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.1)
    return planner.eval().merge_adapters()


def test_a_prompt_padded_for_cuda_graphs_conditions_alike(config):
    """Under CUDA graphs the tokens after the cached prefix run right-padded to a multiple of 16
    (a few recorded shapes); the padding is masked, so the real tokens' states do not change."""
    planner = _merged_planner(config)
    scenes = [planner.scene_objects(*cloud(seed), torch.Generator().manual_seed(seed)) for seed in (0, 1)]
    instructions = ["stack the blocks", "put the red block in the bowl of the same colour as the zone."]
    with torch.no_grad():
        spliced = planner._spliced(scenes, [config.prompt.plan(i) for i in instructions])
        plain = planner._condition_states(spliced)
        padded = planner._condition_states(spliced, pad_to=16)
    assert (spliced.attention_mask.shape[1] - planner._prompt_prefix().length) % 16  # really padded
    torch.testing.assert_close(padded, plain, atol=1e-5, rtol=1e-4)


def test_the_llm_pass_reads_nothing_back_to_the_host_with_grouped_experts(config, monkeypatch, host_reads):
    """What a CUDA graph can record: with the experts as grouped GEMMs (on a GPU, bfloat16; forced
    here) the LLM's pass over a planning prompt makes the host wait for no value; the expert loop
    reads each expert's token count."""
    planner = _merged_planner(config)
    scene = planner.scene_objects(*cloud(), torch.Generator().manual_seed(0))
    with torch.no_grad():
        spliced = planner._spliced([scene], [config.prompt.plan("stack the blocks")])
        planner._prompt_prefix()
        with host_reads() as looped:
            planner._condition_states(spliced)
        assert looped.found.count("tolist") == config.llm.num_layers
        monkeypatch.setattr(moe_module, "grouped_dispatch_supported", lambda *args: True)
        with host_reads() as grouped:
            planner._condition_states(spliced, pad_to=16)
    assert grouped.found == []


@pytest.mark.parametrize("pointer_tokens", ["soft", "hard"])
def test_pointer_and_pose_dit_on_a_padded_condition_read_nothing_back_and_give_the_same_plan(config, pointer_tokens,
                                                                                             host_reads):
    """The object pointer and Pose-DiT's denoising loop, recorded as one CUDA graph per padded
    condition length: masked padding leaves the pointer's choice, the poses and the stop flags as
    they were, and nothing reads a value on the host."""
    config = replace(config, pointer_query="instruction", pointer_relations="pairwise", pointer_relate_layers=2,
                     pointer_tokens=pointer_tokens)
    planner = _merged_planner(config)
    for module in (planner.pose_dit, planner.pointer):  # adaLN-Zero starts at the identity: make it do something
        for layer in module.modules():
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.normal_(layer.weight, std=0.2)
    scene = planner.scene_objects(*cloud(), torch.Generator().manual_seed(0))
    with torch.no_grad():
        condition = planner.condition([scene], ["stack the red block on the blue one"])
        noise = starting_noise(planner.pose_dit, condition.states, config.horizon, torch.Generator().manual_seed(1))
        plain = planner._point_and_sample(condition, noise, None)
        with host_reads() as reads:
            padded = planner._point_and_sample(condition, noise, None, pad_to=16)
    assert condition.states.shape[1] % 16  # really padded
    assert reads.found == []
    assert (plain[3] is None) == (pointer_tokens == "soft")
    for padded_part, plain_part in zip(padded, plain):
        torch.testing.assert_close(padded_part, plain_part, atol=1e-5, rtol=1e-4)


def test_the_scene_tokenizer_reads_nothing_back_when_planning(config, host_reads):
    planner = _merged_planner(config)
    scenes = [planner.scene_objects(*cloud(seed), torch.Generator().manual_seed(seed)) for seed in (0, 1)]
    batch = pad_scenes(scenes)
    with torch.no_grad(), host_reads() as reads:
        planner.scene(*batch)
    assert reads.found == []


def test_cuda_graphs_are_refused_off_a_gpu(config):
    with pytest.raises(ValueError, match="CUDA device"):
        _merged_planner(config).use_cuda_graphs()


def test_condition_marks_each_3d_token_with_its_object(config):
    planner = MoEPlanner(config).eval()
    generator = torch.Generator().manual_seed(0)
    two, three = cloud(0), cloud(1)
    keep = two[2] != 5  # the first scene loses one object
    scenes = [planner.scene_objects(*(x[keep] for x in two), generator), planner.scene_objects(*three, generator)]
    condition = planner.condition(scenes, ["stack the blocks", "put the red block in the green bowl"])
    spliced = planner._spliced(scenes, [config.prompt.plan(i) for i in ("stack the blocks",
                                                                           "put the red block in the green bowl")])
    assert condition.object_mask.sum(1).tolist() == [2, 3]
    for b, objects in enumerate((2, 3)):
        at = spliced.modality_mask[b].nonzero().flatten()
        assert len(at) == objects and not condition.xyz[b][~spliced.modality_mask[b]].isfinite().any()
        for m, position in enumerate(at.tolist()):
            torch.testing.assert_close(condition.object_locations[b, m], scenes[b].locations[m].float())
            torch.testing.assert_close(condition.object_states[b, m], condition.states[b, position])
            # the centre in the poses' normalised frame
            torch.testing.assert_close(condition.xyz[b, position],
                                       normalize_xyz(scenes[b].locations[m, :3]).float())
    # stored one by one and re-batched, the condition is the same
    again = PoseCondition.collate(condition.unbatch())
    for name, value in condition._asdict().items():
        torch.testing.assert_close(getattr(again, name), value, equal_nan=True, msg=name)


def test_object_pointer_reads_the_last_token_and_adds_two_tokens():
    torch.manual_seed(0)
    pointer = ObjectPointer(width=8, size=4)
    with torch.no_grad():
        pointer.roles.normal_()
    # two prompts, right-padded: 5 and 3 real tokens; 3 and 2 objects
    states, mask = torch.randn(2, 5, 8), torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    object_states, object_mask = torch.randn(2, 3, 8), torch.tensor([[True] * 3, [True, True, False]])
    locations = torch.rand(2, 3, 6)
    xyz = torch.full((2, 5, 3), float("nan"))
    colors = torch.rand(2, 3, 3) * 2 - 1
    condition = PoseCondition(states, mask, xyz, object_states, locations, object_mask, colors)
    extended, logits = pointer(condition)
    for b, last in enumerate((4, 2)):
        query = pointer.query(pointer.norm(states[b, last])).view(2, 4)
        # workspace x 0.5 m, y 1 m, z 0.28 m wide: sizes become fractions of the half-width
        sizes = locations[b, :, 3:] / torch.tensor([0.25, 0.5, 0.14])
        appearance = pointer.appearance(torch.cat([colors[b], normalize_xyz(locations[b, :, :3]), sizes], -1))
        want = query @ (pointer.key(pointer.norm(object_states[b])) + appearance).T / 2
        want[:, ~object_mask[b]] = float("-inf")
        torch.testing.assert_close(logits[b], want)
        probs = want.softmax(-1)
        torch.testing.assert_close(extended.states[b, 5:], probs @ object_states[b] + pointer.roles)
        torch.testing.assert_close(extended.xyz[b, 5:], probs @ normalize_xyz(locations[b, :, :3]))
    assert extended.states.shape == (2, 7, 8) and extended.mask[:, 5:].all()
    torch.testing.assert_close(extended.states[:, :5], states)


@pytest.mark.parametrize("relate_layers", [1, 2])
def test_instruction_pointer_pools_the_words_and_the_place_follows_the_pick(relate_layers):
    torch.manual_seed(0)
    pointer = ObjectPointer(width=8, size=4, query="instruction", relate_layers=relate_layers).eval()
    assert len(pointer.relate.layers) == relate_layers
    # one prompt: 2 words, 3 objects, 2 words, 1 padding token
    states, mask = torch.randn(1, 8, 8), torch.tensor([[True] * 7 + [False]])
    xyz = torch.full((1, 8, 3), float("nan"))
    xyz[0, 2:5] = 0.0
    objects = torch.ones(1, 3, dtype=torch.bool)
    condition = PoseCondition(states, mask, xyz, torch.randn(1, 3, 8), torch.rand(1, 3, 6), objects,
                              torch.rand(1, 3, 3))
    # the reference, spelled out: role queries attend over the 4 words only
    words = pointer.norm(states[0, [0, 1, 5, 6]])
    roles, _ = pointer.words(pointer.role_queries[None], words[None], words[None])
    pick_query, place_query = pointer.query(roles[0])
    keys = pointer.key(pointer.norm(condition.object_states)) + pointer.object_appearance(condition)
    related = pointer.relate(keys)[0]
    pick = related @ pick_query / 2
    place = related @ (place_query + pointer.follow(pick.softmax(-1) @ related)) / 2
    torch.testing.assert_close(pointer.logits(condition)[0], torch.stack([pick, place]))
    # the 3D positions of the prompt and its padding are not words
    moved = states.clone()
    moved[0, 2:5], moved[0, 7] = torch.randn(3, 8), torch.randn(8)
    torch.testing.assert_close(pointer.logits(condition._replace(states=moved)), pointer.logits(condition))
    # a word after the objects changes both roles' scores
    changed = states.clone()
    changed[0, 6] = torch.randn(8)
    assert not torch.allclose(pointer.logits(condition._replace(states=changed))[0], pick, atol=1e-4)


@pytest.mark.parametrize("query, fusion_layers", [("last_token", 0), ("last_token", 1), ("instruction", 0)])
def test_object_pointer_grounds_by_colour_when_the_object_states_carry_none(query, fusion_layers):
    """The instruction (here: the last token's state) names a colour; the 3D tokens' states are
    noise, as after too little alignment. The pointer still learns to find the object of that
    colour, from the objects' mean colours."""
    torch.manual_seed(0)
    palette = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]])
    words = torch.randn(len(palette), 16)  # one "instruction state" per colour name

    def batch(size: int) -> tuple[PoseCondition, torch.Tensor]:
        order = torch.stack([torch.randperm(len(palette)) for _ in range(size)])  # object m has colour order[m]
        target_colour = torch.randint(len(palette), (size,))
        states = torch.cat([torch.randn(size, len(palette), 16), words[target_colour][:, None]], 1)
        xyz = torch.full((size, len(palette) + 1, 3), float("nan"))
        xyz[:, :-1] = 0.0
        locations = torch.cat([torch.rand(size, len(palette), 3), torch.full((size, len(palette), 3), 0.04)], -1)
        condition = PoseCondition(states, torch.ones(size, len(palette) + 1, dtype=torch.bool), xyz,
                                  states[:, :-1], locations, torch.ones(size, len(palette), dtype=torch.bool),
                                  palette[order])
        return condition, (order == target_colour[:, None]).float().argmax(1)

    pointer = ObjectPointer(width=16, size=16, fusion_layers=fusion_layers, query=query)
    optimizer = torch.optim.Adam(pointer.parameters(), lr=3e-3)
    for _ in range(300):
        condition, target = batch(32)
        loss = torch.nn.functional.cross_entropy(pointer.logits(condition)[:, 0], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    condition, target = batch(256)
    with torch.no_grad():
        accuracy = (pointer.eval().logits(condition)[:, 0].argmax(-1) == target).float().mean()
    assert accuracy > 0.95  # chance is 0.25


def test_fusion_pointer_scores_each_3d_token_after_it_reads_the_words():
    torch.manual_seed(0)
    pointer = ObjectPointer(width=8, size=4, fusion_layers=1).eval()
    # one prompt: text, 2 objects, text; the object tokens' xyz are finite, the rest NaN
    states, mask = torch.randn(1, 6, 8), torch.ones(1, 6, dtype=torch.bool)
    xyz = torch.full((1, 6, 3), float("nan"))
    xyz[0, 1:3] = 0.0
    objects = torch.ones(1, 2, dtype=torch.bool)
    condition = PoseCondition(states, mask, xyz, states[:, 1:3], torch.rand(1, 2, 6), objects, torch.rand(1, 2, 3))
    tokens = pointer.proj(pointer.norm(states))
    tokens[:, 1:3] += pointer.object_appearance(condition)
    fused = pointer.fusion(tokens, src_key_padding_mask=~mask)
    torch.testing.assert_close(pointer.logits(condition), pointer.score(fused[:, 1:3]).transpose(1, 2))
    # the words after the objects change their scores: bidirectional, unlike the causal LLM
    changed = condition._replace(states=torch.cat([states[:, :5], torch.randn(1, 1, 8)], 1))
    assert not torch.allclose(pointer.logits(changed), pointer.logits(condition))


@pytest.mark.parametrize("query, fusion_layers", [("last_token", 0), ("last_token", 1), ("instruction", 0)])
def test_stage_3_loss_grounds_the_first_pick_and_place(config, query, fusion_layers):
    config.pointer_query, config.pointer_fusion_layers = query, fusion_layers
    planner = MoEPlanner(config)
    planner.set_stage(3)
    xyz, rgb, ids = cloud()
    scenes = [planner.scene_objects(xyz, rgb, ids, torch.Generator().manual_seed(0))]
    # pick object 3 (at 0.4, -0.2), place on object 5 (at 0.6, 0.3)
    plan = PoseSequence([PickPlace((0.4, -0.2, 0.02), (0, 0, 0, 1), (0.6, 0.3, 0.05), (0, 0, 0, 1))])
    condition = planner.condition(scenes, ["put it there"])
    target, grounded = grounding_targets(pad_plans([plan])[0], condition.object_locations, condition.object_mask, 0.05)
    assert target.tolist() == [[0, 2]] and grounded.all()
    losses = planner.pose_loss(condition, [plan])
    assert set(losses) == {"loss", "pose_loss", "stop_loss", "grounding_loss"}
    losses["loss"].backward()
    head = planner.pointer.score if fusion_layers else planner.pointer.query
    assert head.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in planner.scene.parameters())


def test_an_unknown_pointer_query_is_refused():
    with pytest.raises(ValueError, match="pointer_query must be one of"):
        MoEPlannerConfig(pointer_query="first_token")
    with pytest.raises(ValueError, match="query must be one of"):
        ObjectPointer(width=8, query="first_token")


def test_next_step_question_is_the_one_stage_2_trains_on():
    block = ObjectFact("block", "red", "", (0.4, 0.0, 0.02), (0.04, 0.04, 0.04))
    qa = next_step_qa([block], "stack it.", (0.4, 0.0, 0.02), (0.6, -0.3, 0.02))
    assert qa.question == NEXT_STEP_QUESTION.format(instruction="stack it.")


def test_load_planner_opens_either_kind(config, tiny_planner_config, hash_text, tmp_path, monkeypatch):
    MoEPlanner(config).save(tmp_path / "moe")
    assert isinstance(load_planner(tmp_path / "moe"), MoEPlanner)
    monkeypatch.setattr(planner_module, "InstructionEncoder", lambda mode: hash_text)
    pose_dit = PoseDiTPlanner(PoseDiTPlannerConfig.from_dict(tiny_planner_config), instruction_encoder=hash_text)
    save_checkpoint(tmp_path / "pose_dit", pose_dit.checkpoint_payload(), 0, 0)
    assert isinstance(load_planner(tmp_path / "pose_dit"), PoseDiTPlanner)


def _matching_scenes(size: int, generator: torch.Generator) -> tuple[PoseCondition, torch.Tensor]:
    """Three 4 cm blocks and three 12 cm bowls in six different colours but one: exactly one block
    has a bowl of its colour. The instruction and the 3D tokens' states carry nothing."""
    palette = torch.rand(12, 3, generator=generator) * 2 - 1
    colors = torch.stack([palette[torch.randperm(12, generator=generator)[:6]] for _ in range(size)])
    match = torch.randint(3, (size,), generator=generator)
    colors[torch.arange(size), 3 + torch.randint(3, (size,), generator=generator)] = colors[torch.arange(size), match]
    sizes = torch.tensor([0.04] * 3 + [0.12] * 3)[None, :, None].expand(size, 6, 3)
    locations = torch.cat([torch.rand(size, 6, 3, generator=generator) * 0.3 + 0.3, sizes], -1)
    states = torch.zeros(size, 8, 8)
    xyz = torch.full((size, 8, 3), float("nan"))
    xyz[:, :6] = 0.0
    condition = PoseCondition(states, torch.ones(size, 8, dtype=torch.bool), xyz, states[:, :6], locations,
                              torch.ones(size, 6, dtype=torch.bool), colors)
    return condition, match


def test_pairwise_pointer_finds_the_block_whose_colour_has_a_bowl():
    """A relation no single object shows: which block shares its colour with a bowl. Pairwise
    colour differences in the objects' attention make it learnable in a few hundred steps."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    pointer = ObjectPointer(width=8, size=32, query="instruction", relate_layers=2, relations="pairwise")
    optimizer = torch.optim.Adam(pointer.parameters(), lr=3e-3)
    for _ in range(300):
        condition, match = _matching_scenes(32, generator)
        loss = torch.nn.functional.cross_entropy(pointer.logits(condition)[:, 0], match)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    condition, match = _matching_scenes(256, generator)
    with torch.no_grad():
        accuracy = (pointer.eval().logits(condition)[:, 0].argmax(-1) == match).float().mean()
    assert accuracy > 0.9  # chance is 1/3 among the blocks


def test_hard_pointer_tokens_are_the_chosen_objects():
    torch.manual_seed(0)
    pointer = ObjectPointer(width=8, size=4, query="instruction", relations="pairwise", hard=True).eval()
    condition, _ = _matching_scenes(2, torch.Generator().manual_seed(1))
    condition = condition._replace(states=torch.randn(2, 8, 8), object_states=torch.randn(2, 6, 8))
    centres = normalize_xyz(condition.object_locations[..., :3])
    with torch.no_grad():
        extended, logits = pointer(condition)
        top = logits.argmax(-1)
        for b in range(2):
            # the place scores follow the top pick; each token is its object's state and centre
            torch.testing.assert_close(logits[b, 1], pointer.logits(condition, top[:, 0])[b, 1])
            torch.testing.assert_close(extended.states[b, 8:], condition.object_states[b, top[b]] + pointer.roles)
            torch.testing.assert_close(extended.xyz[b, 8:], centres[b, top[b]])
        # given objects (the demo's, in training) replace the choice where given (-1: not given)
        given = torch.tensor([[4, 1], [-1, -1]])
        forced, forced_logits = pointer(condition, given)
        torch.testing.assert_close(forced.xyz[0, 8:], centres[0, [4, 1]])
        torch.testing.assert_close(forced.xyz[1, 8:], extended.xyz[1, 8:])
        torch.testing.assert_close(forced_logits[0, 1], pointer.logits(condition, torch.tensor([4, -1]))[0, 1])


def test_planning_takes_the_likeliest_pair_whose_place_is_not_the_picked_object():
    """The top pick's only likely place is itself (a finished stack picked and put back): the
    pair of the second pick and its place is likelier once an object may not go onto itself."""
    pointer = ObjectPointer(width=8, size=4, query="instruction", hard=True).eval()
    pick_scores = torch.tensor([[2.0, 1.9, -5.0]])
    place_scores = {0: torch.tensor([[3.0, -3.0, -3.0]]), 1: torch.tensor([[2.5, 0.0, -3.0]]),
                    2: torch.tensor([[0.0, 0.0, 0.0]])}

    def scores(condition, reading, pick=None):
        place = place_scores[0 if pick is None else int(pick[0])]
        return torch.stack([pick_scores, place], 1)

    reads = []
    pointer.read, pointer._scores = (lambda condition: reads.append(condition) or ()), scores
    assert pointer.best_pair(None).tolist() == [[1, 0]]
    assert len(reads) == 1  # the scene is read once, each candidate pick's place scored from that
    place_scores[0] = torch.tensor([[3.0, 1.0, -3.0]])  # now the top pick has another good place
    assert pointer.best_pair(None).tolist() == [[0, 1]]
    pick_scores, place_scores[0] = torch.tensor([[1.0]]), torch.tensor([[1.0]])  # one object: as it is
    assert pointer.best_pair(None).tolist() == [[0, 0]]


def _float32_and_fast(config, tmp_path, llm_dtype):
    """A saved planner loaded for planning with a float32 LLM and with an ``llm_dtype`` one."""
    planner = MoEPlanner(config)
    planner.adapt()
    planner.save(tmp_path / "moe")
    return load_planner(tmp_path / "moe"), load_planner(tmp_path / "moe", llm_dtype=llm_dtype)


def _assert_conditions_close_and_plans(full, fast, config, tolerance):
    xyz, rgb, ids = cloud()
    scene = [full.scene_objects(xyz, rgb, ids, torch.Generator().manual_seed(0))]
    with torch.no_grad():
        expected, states = (p.condition(scene, ["stack the blocks"]).states for p in (full, fast))
    assert states.dtype == torch.float32
    assert (states - expected).abs().max() <= tolerance * expected.abs().max()
    plan = fast.plan(xyz, rgb, ids, "stack the blocks", generator=torch.Generator().manual_seed(0))
    assert 1 <= len(plan) <= config.horizon


def test_a_bfloat16_llm_conditions_pose_dit_in_float32_close_to_the_float32_one(config, tmp_path):
    full, fast = _float32_and_fast(config, tmp_path, "bfloat16")
    assert next(fast.llm.parameters()).dtype == torch.bfloat16
    _assert_conditions_close_and_plans(full, fast, config, 0.05)
    with pytest.raises(ValueError, match="llm_dtype must be one of float32, bfloat16, int8"):
        load_planner(tmp_path / "moe", llm_dtype="float16")


def test_an_int8_llm_quantises_the_projections_not_the_routers_and_conditions_close_to_float32(config, tmp_path):
    full, fast = _float32_and_fast(config, tmp_path, "int8")
    kinds = {name: type(module).__module__ for name, module in fast.llm.named_modules()}
    quantised = [name for name, kind in kinds.items() if "quantized" in kind and not name.endswith("_packed_params")]
    assert quantised and all(name.endswith("base_layer") for name in quantised)
    assert any(name.endswith("q_proj.base_layer") for name in quantised)
    assert any(".experts." in name for name in quantised)
    assert not any("router" in name for name in quantised)
    _assert_conditions_close_and_plans(full, fast, config, 0.1)
