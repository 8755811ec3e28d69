"""The benchmark tooling: CPU description, ratio table, reference model mapping.

No benchmark runs here and no reference checkout is needed: the records are
made up, the presets are the zoo's.
"""

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
pytestmark = pytest.mark.backend_independent


def _load(name):
    """Imports benchmarks/<name>.py, leaving sys.path as it was."""
    saved = list(sys.path)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(
            f"bench_{name}", BENCHMARKS / f"{name}.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


collect = _load("collect")
machine_info = _load("machine_info")
models = _load("reference_models")
reference = _load("reference_throughput")
roofline = _load("roofline")

AVX2_CPU = {
    "cpu_model": "AMD EPYC",
    "cpu_family": "AuthenticAMD family 25 model 1",
    "cpu_flags": ["avx2", "fma"],
    "cpu_count": 2,
}
AVX512_CPU = {**AVX2_CPU, "cpu_flags": ["avx2", "fma", "avx512f"]}


def _run(implementation, backend, mode, ips, rss, **extra):
    record = {
        "preset": "spikformer_4_384_cifar10",
        "backend": backend,
        "mode": mode,
        "batch_size": 32,
        "dtype": "float32",
        "remat": False,
        "images_per_second": ips,
        "peak_rss_mb": rss,
        "xla_flags": "",
        **extra,
    }
    if implementation == "reference":
        record.update(implementation="reference", **AVX2_CPU)
    return record


def test_parse_cpuinfo_first_processor_and_vector_summary():
    text = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n"
        "model name\t: AMD EPYC 9B14\nflags\t\t: fpu sse avx avx2 fma avx512f "
        "avx512_bf16\n\nprocessor\t: 1\nmodel name\t: other\nflags\t: fpu\n"
    )
    info = machine_info.parse_cpuinfo(text)
    assert info["cpu_model"] == "AMD EPYC 9B14"
    assert info["cpu_family"] == "AuthenticAMD family 25 model 1"
    assert info["cpu_flags"] == ["avx2", "fma", "avx512f", "avx512_bf16"]
    assert machine_info.vector_summary(info["cpu_flags"]) == "AVX-512"
    assert machine_info.vector_summary(["avx2", "fma"]) == "AVX2, no AVX-512"
    assert machine_info.vector_summary([]) == "no AVX2"


def test_ratios_against_the_reference_of_the_same_mode():
    records = [
        _run("reference", "torch", "train", 2.0, 6000.0),
        _run("reference", "torch", "infer", 6.4, 1000.0),
        _run("ours", "tensorflow", "train", 3.0, 3000.0),
        _run("ours", "jax", "infer", 16.0, 1500.0),
        {**_run("ours", "jax", "infer", 9.0, 900.0), "batch_size": 16},
    ]
    rows = {
        (r["implementation"], r["backend"], r["mode"], r["batch_size"]): r
        for r in collect.with_ratios(records)
    }
    assert rows["ours", "tensorflow", "train", 32]["speed_ratio"] == 1.5
    assert rows["ours", "tensorflow", "train", 32]["rss_ratio"] == 0.5
    assert rows["ours", "jax", "infer", 32]["speed_ratio"] == 2.5
    assert rows["ours", "jax", "infer", 16]["speed_ratio"] == ""  # no batch-16 ref
    assert rows["reference", "torch", "train", 32]["speed_ratio"] == ""


def test_no_ratio_across_different_cpus():
    ref = _run("reference", "torch", "train", 2.0, 6000.0)
    ours = {**_run("ours", "jax", "train", 4.0, 3000.0), **AVX512_CPU}
    rows = collect.with_ratios([ref, ours])
    assert [r["speed_ratio"] for r in rows] == ["", ""]
    line = collect.machine_line([ref, ours])
    assert line.startswith("Machines differ") and "AVX-512" in line
    assert "AVX2, no AVX-512" in line


def test_machine_line_from_a_machine_record_or_none():
    machine = {"record": "machine", **AVX2_CPU}
    assert collect.machine_line([machine]) == (
        "Machine: AMD EPYC (AuthenticAMD family 25 model 1), AVX2, no AVX-512, 2 cores"
    )
    assert "not recorded" in collect.machine_line([_run("ours", "jax", "infer", 1, 1)])


def test_summary_names_the_fastest_and_the_lightest_run():
    records = [
        _run("reference", "torch", "train", 2.0, 6000.0),
        _run("ours", "tensorflow", "train", 3.0, 4000.0),
        _run("ours", "jax", "train", 2.5, 2000.0, remat=True),
        _run("ours", "jax", "infer", 10.0, 1000.0),  # no infer reference
    ]
    lines = collect.summary(records).splitlines()
    assert len(lines) == 3
    assert "| 3.0 (tensorflow) | 1.5x |" in lines[2]
    assert "| 2000.0 (jax, remat) | 0.33x |" in lines[2]
    assert collect.summary(records[1:]) == ""


def test_collect_cli_writes_the_report(tmp_path, capsys):
    paths = []
    records = [
        {"record": "machine", **AVX2_CPU},
        _run("reference", "torch", "infer", 5.0, 800.0),
        _run("ours", "tensorflow", "infer", 20.0, 1600.0),
    ]
    for i, record in enumerate(records):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(record))
    out = tmp_path / "table.md"
    collect.main([str(p) for p in paths] + ["--markdown", str(out)])
    text = out.read_text()
    assert text.strip() == capsys.readouterr().out.strip()
    table = [line for line in text.splitlines() if "| ours |" in line]
    assert len(table) == 1 and "| 20.0 | 4.0 | 1600.0 | 2.0 |" in table[0]
    assert text.index("| reference |") < text.index("| ours |")


@pytest.mark.parametrize(
    "preset, folder, extra",
    [
        ("spikformer_4_384_cifar10", "cifar10", {"T": 4}),
        ("spikformer_8_384_imagenet", "imagenet", {}),
        ("spikformer_2_256_cifar10dvs", "cifar10dvs", {}),
    ],
)
def test_spikformer_presets_map_to_the_matching_reference_model(preset, folder, extra):
    config, task, _ = models.read_preset(preset)
    ref = models.reference_model(config, task)
    assert (ref.family, ref.source, ref.factory) == (
        "spikformer",
        f"{folder}/model.py",
        "Spikformer",
    )
    args = config["config"]
    height, width, channels = args["image_shape"]
    assert ref.kwargs == {
        "img_size_h": height,
        "img_size_w": width,
        "patch_size": args["patch_size"],
        "in_channels": channels,
        "num_classes": task["num_classes"],
        "embed_dims": args["hidden_dim"],
        "num_heads": args["num_heads"],
        "mlp_ratios": 4,
        "depths": args["num_layers"],
        "sr_ratios": 1,
        **extra,
    }
    frames = (args["num_timesteps"],) if folder == "cifar10dvs" else ()
    assert ref.input_shape == frames + (channels, height, width)


def test_successor_presets_map_to_their_reference_constructors():
    def build(preset):
        config, task, meta = models.read_preset(preset)
        return models.reference_model(config, task)

    sdt = build("sdt_8_384_imagenet")
    assert (sdt.repository, sdt.source, sdt.factory) == (
        "BICLab/Spike-Driven-Transformer",
        "model/spikeformer.py",
        "SpikeDrivenTransformer",
    )
    assert sdt.kwargs["pooling_stat"] == "1111" and sdt.kwargs["depths"] == 8
    assert sdt.kwargs["T"] == 4 and not sdt.kwargs["dvs_mode"]
    assert sdt.input_shape == (3, 224, 224) and sdt.timm == "0.6.12"
    dvs = build("sdt_2_256_cifar10dvs")
    assert dvs.kwargs["dvs_mode"] and dvs.input_shape == (10, 2, 64, 64)
    qk = build("qkformer_4_384_cifar10")
    assert (qk.source, qk.factory) == ("cifar10/model.py", "spiking_transformer")
    assert qk.kwargs["depths"] == 4 and qk.kwargs["num_heads"] == 8
    meta = build("meta_spikeformer_15m_imagenet")
    assert meta.source == "classification/models.py"
    assert meta.kwargs["embed_dim"] == [64, 128, 256, 360]
    assert meta.kwargs["mlp_ratios"] == 4 and meta.kwargs["kd"] is False
    assert meta.attributes == {"T": 4}
    assert [
        models.family_of(p) for p in ("sdt_2_512_cifar10", "maxformer_4_384_cifar10")
    ] == ["sdt", ""]


def test_presets_without_a_reference_counterpart_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="MaxFormerBackbone"):
        models.read_preset("maxformer_4_384_cifar10")
    with pytest.raises(SystemExit, match="No preset"):
        models.read_preset("spikformer_4_384_cifar1")
    config, task, _ = models.read_preset("spikformer_8_384_imagenet")

    def variant(**changes):
        changed = {**config, "config": {**config["config"], **changes}}
        return models.reference_model(changed, task)

    with pytest.raises(SystemExit, match="fixes T=4"):
        variant(num_timesteps=2)
    with pytest.raises(SystemExit, match="attention_scale=0.25"):
        variant(attention_scale=0.25)
    with pytest.raises(SystemExit, match="surrogate='atan'"):
        variant(surrogate="atan")
    config, task, _ = models.read_preset("spikformer_tiny_dvs")
    with pytest.raises(SystemExit, match="128x128 frames"):
        models.reference_model(config, task)
    config, task, _ = models.read_preset("qkformer_10_384_imagenet")
    with pytest.raises(SystemExit, match="flavour='imagenet'"):
        models.reference_model(config, task)
    config, task, _ = models.read_preset("meta_spikeformer_15m_imagenet")
    config["config"]["num_layers"] = [4, 2]
    with pytest.raises(SystemExit, match=r"num_layers=\[4, 2\]"):
        models.reference_model(config, task)
    ref = models.reference_model(*models.read_preset("sdt_2_512_cifar10")[:2])
    with pytest.raises(SystemExit, match="not a checkout of BICLab/Spike-Driven-Tr"):
        reference.check_checkout(tmp_path, ref)


def test_parameter_counts_must_equal_ours():
    names = [("block.0.norm1.weight", 384), ("block.0.attn.q.weight", 1000)]
    names += [("head.weight", 10)]
    assert models.counted_parameters(names) == (1394, 0)
    assert models.counted_parameters(names, (r"block\.\d+\.norm[12]\.",)) == (1010, 384)
    models.check_parameter_count("p", 1010, 1010)
    with pytest.raises(SystemExit, match="has 1,394 trainable parameters, ours 1,010"):
        models.check_parameter_count("p", 1010, 1394)
    with pytest.raises(SystemExit, match="no trainable_params in metadata.json"):
        models.check_parameter_count("p", None, 1394)
    _, _, meta = models.read_preset("qkformer_4_384_cifar10")
    assert meta["trainable_params"] == 6706234  # qkformer.md: the reference's count


def test_reference_arguments_family_inferred_and_checked():
    def parse(*extra):
        return reference.parse_args(["--reference-dir", "x", "--mode", "train", *extra])

    args = parse("--preset", "qkformer_4_384_cifar10")
    assert (args.device, args.neuron_backend, args.family) == ("cpu", "torch", None)
    assert reference.resolve(args)[3].family == "qkformer"
    with pytest.raises(SystemExit, match="--family sdt does not match"):
        reference.resolve(
            parse("--preset", "qkformer_4_384_cifar10", "--family", "sdt")
        )
    with pytest.raises(SystemExit):
        parse("--neuron-backend", "cupy")  # CuPy needs --device cuda
    assert parse("--neuron-backend", "cupy", "--device", "cuda").device == "cuda"


def _family_run(preset, implementation, backend, mode, ips, rss, cpu=AVX2_CPU, **extra):
    record = _run(implementation, backend, mode, ips, rss, **extra)
    return {**record, "preset": preset, "batch_size": 8, **cpu}


def test_family_table_medians_of_repeats_and_ratios_per_family():
    records = [{"record": "machine", **AVX2_CPU}]
    for ref_ips, jax_ips in ((1.0, 3.0), (2.0, 5.0), (1.5, 30.0)):  # three repeats
        records.append(
            _family_run(
                "sdt_8_384_imagenet", "reference", "torch", "train", ref_ips, 4000.0
            )
        )
        records.append(
            _family_run("sdt_8_384_imagenet", "ours", "jax", "train", jax_ips, 2000.0)
        )
    records.append(
        _family_run("sdt_8_384_imagenet", "ours", "torch", "train", 2.25, 3000.0)
    )
    records.append(
        _family_run("qkformer_4_384_cifar10", "reference", "torch", "infer", 4.0, 800.0)
    )
    records.append(
        _family_run("qkformer_4_384_cifar10", "ours", "jax", "infer", 10.0, 1200.0)
    )
    # another CPU: no ratio against the AVX2 reference, and no row of its own
    records.append(
        _family_run(
            "qkformer_4_384_cifar10", "ours", "jax", "infer", 99.0, 10.0, cpu=AVX512_CPU
        )
    )
    rows = {(r["family"], r["mode"]): r for r in collect.family_rows(records)}
    assert set(rows) == {("sdt", "train"), ("qkformer", "infer")}
    sdt = rows["sdt", "train"]
    assert sdt["reference"]["images_per_second"] == 1.5
    assert sdt["reference"]["repeats"] == 3
    assert sdt["fastest"]["images_per_second"] == 5.0  # median, not the 30.0 outlier
    assert sdt["torch"]["images_per_second"] == 2.25
    text = collect.family_table(records)
    assert (
        "| sdt | sdt_8_384_imagenet | 8 | train | 1.5 (3) | 5.0 (jax) | 3.33x | 2.25 | 1.50x |"
        in text
    )
    assert "| 4000.0 | 2000.0 (jax) | 0.50x |" in text
    assert (
        "| qkformer | qkformer_4_384_cifar10 | 8 | infer | 4.0 (1) | 10.0 (jax) | 2.50x |  |  |"
        in text
    )
    assert "99.0" not in text and text.count("Machine:") == 1
    assert collect.family_table(records[-1:]) == ""


def test_family_table_script_needs_every_reference_checkout(tmp_path):
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.endswith("_DIR")}
    env.update(
        RESULTS=str(tmp_path / "out"), FAMILIES="sdt qkformer", SDT_DIR=str(tmp_path)
    )
    script = str(BENCHMARKS / "run_family_table.sh")
    result = subprocess.run(
        ["bash", script, "2"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "QKFORMER_DIR is not set" in result.stderr
    assert not (tmp_path / "out").exists()  # refused before any run
    result = subprocess.run(
        ["bash", script, "0"], env=env, capture_output=True, text=True, timeout=30
    )
    assert (
        result.returncode == 2 and "REPEATS must be a positive integer" in result.stderr
    )


def test_roofline_counts_three_forward_passes_per_training_image():
    records = [
        {"_file": "a.json", "mode": "train", "images_per_second": 2.0},
        {
            "_file": "r.json",
            "mode": "infer",
            "images_per_second": 10.0,
            "implementation": "reference",
        },
        {"_file": "m.json", "record": "machine"},
    ]
    rows = roofline.rows(records, gflop_infer=5.0, peak=100.0)
    assert [r["name"] for r in rows] == ["a.json", "r.json"]
    assert rows[0]["gflops"] == 30.0 and rows[0]["share_of_peak"] == 0.3
    assert rows[1]["gflops"] == 50.0 and rows[1]["implementation"] == "reference"


def test_matmul_peak_is_a_positive_rate():
    assert roofline.matmul_peak_gflops(size=64, repeats=1) > 0


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="Linux only")
def test_cold_cache_advises_every_file_under_the_dataset(tmp_path):
    pipeline = _load("input_pipeline")
    for path in ("a/1.jpg", "a/2.jpg", "b/c/3.png"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"\xff\xd8" * 4096)
    assert pipeline.evict_page_cache(tmp_path) == 3
    args = pipeline.parse_args(["--cold-cache", "--num-images", "20"])
    assert args.cold_cache and not pipeline.parse_args([]).cold_cache


def test_unit_costs_refuses_zero_repeats():
    unit_costs = _load("unit_costs")
    assert unit_costs.parse_args([]).units == [1536, 384]
    with pytest.raises(SystemExit):
        unit_costs.parse_args(["--repeats", "0"])


def test_interleaved_rounds_need_the_reference_checkout():
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "REFERENCE_DIR"}
    result = subprocess.run(
        ["bash", str(BENCHMARKS / "run_interleaved.sh"), "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "REFERENCE_DIR" in result.stderr and result.stdout == ""
