"""benchmarks/profile_step.py: HLO parsing and grouping (no profiling runs here)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "profile_step.py"
pytestmark = pytest.mark.backend_independent

HLO = """HloModule jit_train_step

%fused_computation.1 (param_0: f32[8]) -> f32[8] {
  %param_0 = f32[8]{0} parameter(0)
}

ENTRY %main.1 (p: f32[8192,384]) -> f32[8192,1536] {
  %p = f32[8192,384]{1,0} parameter(0)
  %ynn_fusion.30 = f32[8192,1536]{1,0} fusion(%p), kind=kCustom, metadata={op_name="jit(train_step)/jvp(spikformer_backbone)/block_0/mlp/fc1/dense/dot_general"}
  ROOT %copy_bitcast_fusion.13 = f32[1536,8192]{1,0} fusion(%ynn_fusion.30), kind=kLoop, metadata={op_name="jit(train_step)/transpose(jvp(spikformer_backbone))/block_3/mlp/fc1/bn/reshape"}
}
"""


def _load():
    spec = importlib.util.spec_from_file_location("profile_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_instructions_are_read_from_the_entry_and_grouped_by_layer(tmp_path):
    profile_step = _load()
    (tmp_path / "module_0070.jit_train_step.cpu_after_optimizations.txt").write_text(
        HLO
    )
    instructions = profile_step.hlo_instructions(str(tmp_path))
    assert set(instructions) == {"p", "ynn_fusion.30", "copy_bitcast_fusion.13"}
    shape, op_name = instructions["copy_bitcast_fusion.13"]
    assert shape == "f32[1536,8192]{1,0}"
    assert profile_step.group_of(op_name) == ("bwd", "block_*/mlp/fc1")
    assert profile_step.group_of(instructions["ynn_fusion.30"][1]) == (
        "fwd",
        "block_*/mlp/fc1",
    )
    assert profile_step.group_of("") == ("other", "(outside the backbone)")
    assert profile_step.kind_of("ynn_fusion.30") == "matmul"
    assert profile_step.kind_of("dot.7") == "matmul"
    assert profile_step.kind_of("copy_bitcast_fusion.13") == "elementwise/copy"


def test_missing_dump_and_trace_name_the_directory(tmp_path):
    profile_step = _load()
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        profile_step.hlo_instructions(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="xplane"):
        profile_step.thunk_times(str(tmp_path), 1)
