"""Building for every named target: aarch64 exports an aarch64 ELF, CUDA / OpenCL generate kernel
source with DLight schedules (running them needs a device: skipped with the reason), and bad
targets or missing compilers are one-line errors naming what to install."""
import json
import struct

import numpy as np
import pytest

from canao.errors import CanaoError

EM_X86_64, EM_AARCH64 = 62, 183


def _e_machine(path) -> int:
    header = open(path, "rb").read(20)
    assert header[:4] == b"\x7fELF", "not an ELF file"
    return struct.unpack("<H", header[18:20])[0]


@pytest.fixture(scope="module")
def tiny():
    import torch

    from canao.frontends import from_torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.LayerNorm(64)).eval()
    x = np.random.default_rng(0).standard_normal((16, 64)).astype("float32")
    return from_torch(model, {"input": x}, name="tiny-mlp")


def test_aarch64_export_is_an_aarch64_elf(tiny, tmp_path):
    from canao.codegen import resolve_target
    from canao.codegen.build import build

    compiled = build(tiny, resolve_target("android-arm64"))
    compiled.export(tmp_path / "lib.so")
    assert _e_machine(tmp_path / "lib.so") == EM_AARCH64


GPU_TARGETS = [("cuda", "__global__", EM_X86_64), ("opencl-adreno", "__kernel", EM_AARCH64),
               ("opencl-mali", "__kernel", EM_AARCH64)]


@pytest.mark.parametrize("name,kernel_keyword,host_machine", GPU_TARGETS)
def test_gpu_codegen_gives_kernel_source_and_exports(tiny, tmp_path, name, kernel_keyword, host_machine):
    from canao.codegen import resolve_target
    from canao.codegen.gpu import build_gpu, kernel_source, unscheduled_kernels

    spec = resolve_target(name)
    compiled = build_gpu(tiny, spec)
    assert not unscheduled_kernels(compiled.mod)  # every kernel bound to GPU threads
    source = kernel_source(compiled)
    assert source.strip() and source.count(kernel_keyword) >= compiled.kernels >= 2
    compiled.export(tmp_path / "lib.so")
    assert _e_machine(tmp_path / "lib.so") == host_machine  # host code for the device's CPU


@pytest.mark.parametrize("name", ["cuda", "opencl-adreno"])
def test_gpu_builds_run_only_where_the_device_exists(tiny, name):
    from canao.codegen import resolve_target
    from canao.codegen.gpu import can_run

    spec = resolve_target(name)
    runs, why = can_run(spec)
    if not runs:
        pytest.skip(why)
    import tvm
    from tvm import relax

    from canao.codegen.gpu import build_gpu

    compiled = build_gpu(tiny, spec)
    dev = tvm.device(spec.device, 0)
    vm = relax.VirtualMachine(compiled.executable, dev)
    inputs = tiny.example_inputs(0)
    args = [tvm.runtime.tensor(inputs[s.name], dev) for s in tiny.inputs] + \
           [tvm.runtime.tensor(p, dev) for p in compiled.params]
    np.testing.assert_allclose(vm["main"](*args).numpy(), tiny.reference(inputs), rtol=1e-4, atol=1e-4)


def test_gpu_kernel_source_of_a_cpu_build_is_an_error(tiny, host_target):
    from canao.codegen.build import build
    from canao.codegen.gpu import kernel_source

    with pytest.raises(CanaoError, match="no GPU device module"):
        kernel_source(build(tiny, host_target))


def test_plain_tvm_target_strings_are_parsed():
    from canao.codegen import resolve_target

    spec = resolve_target("llvm -mtriple=aarch64-linux-gnu -mattr=+neon,+dotprod")
    assert spec.arch == "aarch64" and spec.cross_compiler and not spec.runs_locally
    assert list(spec.tvm_target().export()["mattr"]) == ["+neon", "+dotprod"]
    assert resolve_target("llvm -num-cores=2").tvm_target().export()["num-cores"] == 2


def test_unknown_target_names_the_choices():
    from canao.codegen import resolve_target

    with pytest.raises(CanaoError) as err:
        resolve_target("nonsense-gpu -x")
    text = err.value.one_line()
    assert "unknown target" in text and "opencl-adreno" in text and "canao targets" in text
    assert "\n" not in text


def test_missing_cross_compiler_says_what_to_install(monkeypatch):
    from dataclasses import replace

    from canao.codegen import resolve_target
    from canao.codegen.targets import check_cross_compiler

    spec = replace(resolve_target("arm64"), cross_compiler="aarch64-nowhere-g++")
    with pytest.raises(CanaoError) as err:
        check_cross_compiler(spec)
    assert "not installed" in err.value.cause and "apt-get install g++-aarch64-linux-gnu" in err.value.fix

    monkeypatch.setenv("ANDROID_NDK_HOME", "/no/such/ndk")
    with pytest.raises(CanaoError) as err:
        check_cross_compiler(resolve_target("arm64"))
    assert "/no/such/ndk" in err.value.cause and "ANDROID_NDK_HOME" in err.value.fix


def test_targets_command_lists_every_target(capsys):
    import argparse

    from canao.codegen import cli, list_targets

    parser = argparse.ArgumentParser(prog="canao")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["targets", "--json"])
    assert args.func(args) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {t.name for t in list_targets()}
    assert rows["x86"]["runs_here"] and rows["x86"]["cross_compiler"] is None
    assert rows["android-arm64"]["cross_compiler_installed"] is True  # the Debian cross g++ is installed here
    assert not rows["cuda"]["runs_here"] and "cuda" in rows["cuda"]["why_not"].lower()

    args = parser.parse_args(["targets"])
    assert args.func(args) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in rows) and "installed" in table


def test_tune_command_refuses_what_it_cannot_measure(tmp_path):
    import argparse

    from canao.codegen import cli

    parser = argparse.ArgumentParser(prog="canao")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["tune", "minilm-l6", "--target", "arm64", "--trials", "8", "--db", str(tmp_path)])
    with pytest.raises(CanaoError) as err:
        args.func(args)
    assert "--tracker" in err.value.fix
