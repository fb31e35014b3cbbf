"""`ptekit verify` passes no file that the reference runtime (executorch 1.5.1) rejects or
aborts on: mutants of corpus files (byte flips in the flatbuffer, truncations, and
semantic mutants written by the reference's own serializers) go through both, the runtime
in a child process (`scripts/runtime_load.py`). A bounded, seeded set; run
`scripts/verify_vs_runtime.py` for the large one."""

import json
import pathlib
import subprocess
import sys

import pytest

from conftest import CORPUS, ROOT

sys.path.insert(0, str(ROOT / "scripts"))

import verify_vs_runtime as vvr  # noqa: E402

FILES = ["add.pte", "mlp.pte", "mlp.bpte", "external.pte", "external._default_external_constant.ptd"]


@pytest.fixture(scope="module")
def results(tmp_path_factory, ptekit):
    out = tmp_path_factory.mktemp("mutants")
    jobs = vvr.make_mutants([CORPUS / f for f in FILES], out, per_file=6, seed=7)
    return vvr.run(jobs)


def _find(results, source, mutation):
    found = [r for r in results if r["source"] == source and r["mutation"] == mutation]
    assert found, f"no {mutation} mutant of {source}"
    return found[0]


def test_no_file_the_runtime_refuses_passes_verify(results):
    missed = vvr.misses(results)
    assert not missed, "\n".join(
        f"{r['source']} {r['mutation']}: runtime {r['outcome']} {r['detail']}" for r in missed
    )
    # The set reaches both kinds of runtime failure, and files the runtime accepts.
    outcomes = {r["outcome"] for r in results}
    assert {"ok", "rejected", "aborted"} <= outcomes, vvr.summarize(results)


@pytest.mark.parametrize(
    "source,mutation",
    [
        # A negative size in a program tensor: the runtime refuses the method.
        ("mlp.pte", "negate"),
        ("mlp.pte", "dtype"),
        # A constant whose sizes need more bytes than its segment entry has.
        ("mlp.pte", "grow"),
        # Bundled test tensors: the runtime aborts on a negative size or an unknown dtype.
        ("mlp.bpte", "negate"),
        ("mlp.bpte", "dtype"),
        ("mlp.bpte", "dtype-out"),
        # A .ptd tensor layout with an unknown dtype, a negative size, more elements
        # than its segment holds.
        ("external._default_external_constant.ptd", "dtype"),
        ("external._default_external_constant.ptd", "negate"),
        ("external._default_external_constant.ptd", "short"),
    ],
)
def test_semantic_mutants_fail_in_both(results, source, mutation):
    r = _find(results, source, mutation)
    assert r["outcome"] in ("rejected", "aborted"), r
    assert not r["verify_ok"], r


def test_short_bundled_test_data_is_refused(results):
    # The runtime copies numel * itemsize bytes from the test data without looking at its
    # length: it reads past the data (here the outputs then differ, or it aborts).
    r = _find(results, "mlp.bpte", "short")
    assert r["outcome"] in ("rejected", "aborted", "mismatch"), r
    assert not r["verify_ok"] and "need" in r["verify_error"], r


def test_legacy_inline_constants_is_refused_like_the_runtime_and_upgrade_fixes_it(ptekit, tmp_path):
    src = CORPUS / "legacy_inline_constants.pte"
    loaded = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "runtime_load.py"), str(src)], capture_output=True, text=True
    )
    assert "rejected" in loaded.stdout, loaded.stdout
    v = ptekit("verify", src, check=False)
    assert v.returncode == 1 and "constant_buffer (file offset 0x" in v.stderr, v.stderr
    out = tmp_path / "upgraded.pte"
    ptekit("rewrite", src, out, "--upgrade")
    ptekit("verify", out)


def test_bundled_rewrite_refuses_a_bundle_verify_refuses(results, ptekit, tmp_path):
    r = _find(results, "mlp.bpte", "negate")
    rewritten = ptekit("rewrite", r["path"], tmp_path / "out.bpte", check=False)
    assert rewritten.returncode == 1, rewritten.stderr
    assert "sizes[0]" in rewritten.stderr and "negative size" in rewritten.stderr
    assert not (tmp_path / "out.bpte").exists()


def _flip(name, at, value, expect_old=None):
    data = bytearray((CORPUS / name).read_bytes())
    if expect_old is not None:
        assert data[at] == expect_old, f"{name}@{at} is {data[at]:#04x}: the corpus file changed"
    data[at] = value
    return bytes(data)


# Single-byte mutants the runtime refuses, found by `scripts/verify_vs_runtime.py
# --per-file 40 --seed 3` when verify still passed them: (source, offset, new byte,
# corpus byte there).
SPECIFIC = {
    # The union type of execution_plan[0].values[286] (a Tensor, type 5) set to NONE: the
    # runtime's parse_values logs "Unknown KernelTypes value" and load_method fails 0x23.
    "none-value": ("transformer.pte", 18931, 0x00, 0x05),
    # Inside the XNNPACK payload of a bundled program's embedded program: a named-data
    # key changed (XNNCompiler cannot get the constant: 0x20 at init) and a vtable entry
    # of an XNNPACK value (the delegate refuses the graph, 0x30).
    "bpte-xnnpack-key": ("mlp_xnnpack.bpte", 398, 0x7F, None),
    "bpte-xnnpack-vtable": ("mlp_xnnpack.bpte", 2558, 0x09, None),
    # One byte of the delegate's backend id: "Backend Xnnpa\x7fkBackend is not registered"
    # (NotFound, 0x20). What backends a runtime has is fixed when it is built, and a
    # runtime with that backend would load the file: the script counts it as the
    # environment's; verify accepts it and warns that it needs that backend.
    "backend-id": ("transformer_xnnpack.pte", 6409, 0x7F, ord("c")),
    # Found by `--seed 4`: the vtable entry of chains[0].instructions set to 0 (absent):
    # "Missing instructions in chain 0", InvalidProgram.
    "no-instructions": ("mlp.pte", 426, 0x00, 0x04),
    # non_const_buffer_sizes[1] = 224 + 2**39: the Python runtime allocates the planned
    # buffers when it loads the program and fails (std::bad_alloc) on this machine; the
    # file is consistent, and a machine with 512 GiB to spare loads it: the script counts
    # it as the environment's, from the planned memory verify reports.
    "planned-memory": ("mlp_xnnpack.pte", 724, 0x80, 0x00),
    # Found by `--seed 5`: the file identifier ET12 -> ET13, which the reader takes (a
    # newer schema) and the runtime refuses ("Program identifier 'ET13' != expected").
    "identifier": ("mlp_xnnpack.pte", 7, 0x33, ord("2")),
    # Found by `--seed 6`: an optional tensor list item pointing at an Int value:
    # "Failed parsing optional tensor list at index 14: 0x13" (InvalidType).
    "list-item": ("scalars_lists.pte", 1732, 0x08, 0x09),
    # Found by `--seed 7`, inside the XNNPACK payload of a bundled program: the top byte
    # of a fully-connected node's output_max (inf -> -inf, below output_min 0), which
    # xnn_define_fully_connected refuses; a value's flags 0x1 -> 0x400001, which the
    # delegate refuses before it defines the value.
    "fc-range": ("mlp_xnnpack.bpte", 2739, 0xFF, 0x7F),
    "value-flags": ("mlp_xnnpack.bpte", 2606, 0x40, 0x00),
    # Found by `--seed 8`: a node's union type StaticReshape -> ArgMaxPooling2d, whose
    # table then reads as a 0x0 pooling window (xnn_define_argmax_pooling_2d refuses it).
    "argmax-window": ("transformer_xnnpack.bpte", 42531, 0x15, 0x14),
    # Found by `--seed 9`: the method's static output sizes [2, 4] -> [3, 4]. The program
    # loads; the bundled test fails when the delegate resizes the output to the [2, 4] it
    # computes (NotSupported). Its expected output [2, 4] can never match [3, 4].
    "output-shape": ("mlp_xnnpack.bpte", 1060, 0x03, 0x02),
    # Found by `--seed 12`: a constant XNNPACK filter's dims [4, 32] -> [8388612, 32] with
    # its 512 bytes of named data: XNNPACK packs dims-many weights from it and the runtime
    # dies (SIGSEGV).
    "constant-dims": ("mlp_xnnpack.bpte", 2350, 0x80, 0x00),
    # Found by `--seed 15`: the vtable entry of execution_plan[0].delegates set to 0
    # (absent): "Missing delegates field", InvalidProgram (an empty vector is fine).
    "no-delegates": ("add.pte", 128, 0x00, 0x08),
    # Found by `--seed 16` and `--seed 17`: the vtable entries of execution_plan[0].outputs
    # and .name set to 0: the runtime aborts (CheckOk) on either.
    "no-outputs": ("mlp_xnnpack.pte", 658, 0x00, 0x14),
    "no-name": ("mlp_xnnpack.pte", 650, 0x00, 0x24),
    # Found by `--seed 20`: an IntList item (permute_copy's dims) pointing at a Tensor
    # value: the kernel unwraps it as an Int and the runtime aborts (EValue::toInt).
    "int-list-item": ("mlp.bpte", 1344, 0x05, 0x06),
    # Found by `--seed 21`: the length of an aten::addmm.out KernelCall's args 7 -> 0:
    # the codegen kernel checks it got its 7 values (6 schema arguments and the result)
    # and fails the call, InvalidProgram.
    "kernel-args": ("mlp.bpte", 556, 0x00, 0x07),
    # Found by `--seed 22`: the XNNPACK delegate call's args [0, 1] -> [0, 0]: the delegate
    # takes argument 1 (the program input, static [2, 16]) for its external output and
    # cannot resize it to the [2, 4] it computes (NotSupported).
    "delegate-args": ("mlp_xnnpack.bpte", 948, 0x00, 0x01),
    # Found by `--seed 26`: the root vtable's entry of Program.execution_plan set to 0
    # (absent): the runtime's validate_program refuses it ("Program has null
    # execution_plan", InvalidProgram).
    "no-execution-plan": ("mlp.pte", 50, 0x00, 0x14),
}


@pytest.fixture(scope="module")
def specific(tmp_path_factory, ptekit):
    out = tmp_path_factory.mktemp("specific")
    jobs = []
    for what, (name, at, value, old) in SPECIFIC.items():
        path = out / f"{what}{pathlib.Path(name).suffix}"
        path.write_bytes(_flip(name, at, value, old))
        jobs.append({"path": str(path), "source": name, "mutation": what})
    return {r["mutation"]: r for r in vvr.run(jobs)}


@pytest.mark.parametrize("what", ["bpte-xnnpack-key", "bpte-xnnpack-vtable"])
def test_bundled_programs_have_their_xnnpack_payloads_checked(specific, what):
    r = specific[what]
    assert r["outcome"] in ("rejected", "aborted") and not r["environment"], r
    assert not r["verify_ok"], r
    assert "embedded program (at .bpte offset 0x" in r["verify_error"], r
    assert ".xnnpack." in r["verify_error"], r
    # The payload byte is also given as the offset in the .bpte.
    assert " at file offset 0x" in r["verify_error"] and "(payload byte " in r["verify_error"], r


def test_a_missing_named_key_of_a_bundled_program_says_it_has_no_ptd(specific):
    # mlp_xnnpack.bpte: the payload starts at 0x640, constant_data[2] at its byte 312.
    e = specific["bpte-xnnpack-key"]["verify_error"]
    assert "(a bundled program is loaded without a .ptd) at file offset 0x778 (payload byte 312)" in e, e
    assert "given .ptd" not in e, e


def test_unregistered_backend_is_the_environment_and_verify_warns(specific, ptekit):
    r = specific["backend-id"]
    assert r["outcome"] == "rejected" and "0x:20" in r["detail"], r
    assert "Xnnpa\x7fkBackend is not registered" in r["log"], r["log"]
    assert r["environment"] and "not registered" in r["environment"], r
    assert r["verify_ok"] and not vvr.misses([r]), r
    v = ptekit("verify", "--json", r["path"])
    assert json.loads(v.stdout)["backends"] == ["XnnpackBackend", "Xnnpa\x7fkBackend"]
    # Text output writes a control character of a name escaped (JSON has it as it is).
    assert "warning: the payloads of backend(s) Xnnpa\\x7fkBackend are not checked" in v.stderr, v.stderr


def test_more_planned_memory_than_the_machine_has_is_the_environment(specific, ptekit):
    r = specific["planned-memory"]
    assert r["outcome"] == "rejected" and "bad_alloc" in r["detail"], r
    assert r["environment"] and "planned memory larger" in r["environment"], r
    assert "549755814112 bytes >" in r["environment"], r
    assert r["verify_ok"] and not vvr.misses([r]), r
    v = json.loads(ptekit("verify", "--json", r["path"]).stdout)
    assert v["planned_memory_bytes"] == 224 + 2**39
    original = json.loads(ptekit("verify", "--json", CORPUS / "mlp_xnnpack.pte").stdout)
    assert original["planned_memory_bytes"] == 224


@pytest.mark.parametrize(
    "what,error,logged,refusal",
    [
        ("none-value", "0x:23", "Unknown KernelTypes value 4294967295 at index 286",
         "execution_plan[0].values[286].val_type (file offset 0x49f3)"),
        ("no-instructions", "0x:23", "Missing instructions in chain 0",
         "execution_plan[0].chains[0].instructions (file offset 0x"),
        ("identifier", "0x:23", "Program identifier 'ET13'", "file_identifier (file offset 0x4)"),
        ("list-item", "0x:13", "optional tensor list at index 14",
         "values[14].val.OptionalTensorList.items[0] (file offset 0x"),
        # XNNPACK payload fields, at their offset in the .bpte (the flipped byte is in
        # the field: output_max at 0xab0..0xab4, flags at 0xa2c..0xa30).
        ("fc-range", "status 0x1", "Failed to create linear node 1, with code: xnn_status_invalid_parameter",
         "xnodes[0].output_min_max.output_max: -inf is below output_min 0: XNNPACK refuses a reversed range"
         " at file offset 0xab0 (payload byte 1136)"),
        ("value-flags", "status 0x23", "Tensor value has unsupported flag bits 0x400001",
         "xvalues[0].XNNTensorValue.flags: 0x400001 has bits other than external input (0x1) and output (0x2)"
         ": the runtime refuses them at file offset 0xa2c (payload byte 1004)"),
        ("argmax-window", "status 0x1", "Failed to create argmaxpool2d node 57 with code: xnn_status_invalid_parameter",
         "delegates[14].xnnpack.xnodes[0].XNNArgMaxPooling2d.pooling_height: a 0x0 pooling window"),
        ("output-shape", "status 0x10", "CALL_DELEGATE execute failed at instruction 0: 0x10",
         # The delegate's output tensor (args[1]) is the one it cannot resize (the
         # expected output [2, 4] does not fit either: bundle verify checks it later).
         "DelegateCall.args[1]: value 1 is a static tensor of sizes [3, 4] (dim order [0, 1]), but the external"
         " output xvalues[6] (external_id 1) of delegate 0 is [2, 4]"),
        ("no-execution-plan", "0x:23", "Program validation failed", "execution_plan (file offset 0x"),
        ("no-delegates", "0x:23", "Missing delegates field", "execution_plan[0].delegates (file offset 0x84)"),
        ("no-outputs", "SIGABRT", "assert failed", "execution_plan[0].outputs (file offset 0x"),
        ("no-name", "SIGABRT", "Execution plan 0 has null name", "execution_plan[0].name (file offset 0x29c)"),
        ("int-list-item", "SIGABRT", "EValue is not an int",
         "values[8].val.IntList.items[0] (file offset 0x"),
        ("kernel-args", "status 0x23", "Expected 7args received 0",
         "instructions[4].instr_args.KernelCall.args (file offset 0x"),
        # At the flipped byte: the call's args[1] in the .bpte.
        ("delegate-args", "status 0x10", "Attempted to resize a static tensor",
         "instructions[0].instr_args.DelegateCall.args[1]: value 0 is a static tensor of sizes [2, 16]"
         " (dim order [0, 1]), but the external output xvalues[6] (external_id 1) of delegate 0 is [2, 4]"
         " at file offset 0x3b4"),
        ("constant-dims", "SIGSEGV", "",
         "xvalues[4].XNNTensorValue.dims: [8388612, 32] of fp32 need 1073742336 bytes, but constant_data[3] holds 512"),
    ],
)
def test_program_defects_the_runtime_refuses_are_refused_at_their_offset(specific, what, error, logged, refusal):
    r = specific[what]
    assert r["outcome"] in ("rejected", "aborted") and error in r["detail"], r
    assert logged in r["log"], r["log"]
    assert not r["verify_ok"], r
    assert refusal in r["verify_error"], r


def test_kernel_argument_counts_are_those_of_the_wheels_kernels(specific):
    """verify's table of kernel argument counts is what the wheel registers (its
    operators, their schemas), and a call with another count is refused as the kernel
    refuses it."""
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_kernel_args.py"), "--check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    e = specific["kernel-args"]["verify_error"]
    assert "0 values for aten::addmm.out, whose kernel takes 7 (6 schema arguments and the result)" in e, e


@pytest.mark.parametrize("source,call", [("mlp.pte", "KernelCall"), ("mlp_xnnpack.pte", "DelegateCall")])
def test_a_call_without_its_argument_vector_is_refused_like_the_runtime(tmp_path, source, call):
    """The first kernel or delegate call of a program written by the reference's
    serializer with `args` None (absent): Method::init refuses it ('KernelCall args
    missing', InvalidProgram); an empty vector would load."""
    from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary

    pte = deserialize_pte_binary((CORPUS / source).read_bytes())
    instructions = pte.program.execution_plan[0].chains[0].instructions
    first = next(i for i in instructions if type(i.instr_args).__name__ == call)
    first.instr_args.args = None
    path = tmp_path / source
    path.write_bytes(bytes(serialize_pte_binary(pte)))
    (r,) = vvr.run([{"path": str(path), "source": source, "mutation": f"{call}-no-args"}])
    assert r["outcome"] == "rejected" and "0x:23" in r["detail"], r
    assert f"{call} args missing" in r["log"], r["log"]
    assert not r["verify_ok"], r
    assert f"{call}.args (file offset 0x" in r["verify_error"] and "missing" in r["verify_error"], r


def test_bundle_make_bounds_dynamic_inputs_like_the_runtime_and_unbounded_ones_do_not_load(ptekit, tmp_path):
    """`bundle make` takes a dynamic input up to the program's sizes: what the runtime
    resizes a dynamic input to. A DYNAMIC_UNBOUND input, which make bounds the same way,
    makes a program the runtime does not load at all, and verify refuses it there."""
    import numpy as np
    import torch
    from executorch.exir._serialize._program import deserialize_pte_binary, serialize_pte_binary
    from executorch.exir.schema import TensorShapeDynamism

    from runtime_io import run_forward

    src = CORPUS / "dynamic.pte"  # forward(x): x dynamic up to [64, 16], output [.., 4]
    assert run_forward(src, [torch.zeros(64, 16)])[0].shape == (64, 4)
    with pytest.raises(RuntimeError, match="set_inputs"):
        run_forward(src, [torch.zeros(65, 16)])

    def arrays(rows):
        path = tmp_path / f"{rows}.npz"
        np.savez(path, in0=np.zeros((rows, 16), np.float32), out0=np.zeros((rows, 4), np.float32))
        return path

    def make(program, rows):
        out = tmp_path / f"{program.stem}-{rows}.bpte"
        return ptekit("bundle", "make", program, "--method", "forward", arrays(rows), arrays(rows), "-o", out,
                      check=False), out

    assert make(src, 64)[0].returncode == 0
    refused, out = make(src, 65)
    assert refused.returncode == 1 and "shape [65, 16] but the program expects sizes at most [64, 16]" in refused.stderr
    assert not out.exists()

    # The same program with its input DYNAMIC_UNBOUND, written by the reference's serializer.
    pte = deserialize_pte_binary(src.read_bytes())
    plan = pte.program.execution_plan[0]
    plan.values[plan.inputs[0]].val.shape_dynamism = TensorShapeDynamism.DYNAMIC_UNBOUND
    unbounded = tmp_path / "unbounded.pte"
    unbounded.write_bytes(bytes(serialize_pte_binary(pte)))
    (r,) = vvr.run([{"path": str(unbounded), "source": "dynamic.pte", "mutation": "unbounded"}])
    assert r["outcome"] == "rejected" and "0x:10" in r["detail"], r
    assert "Fully dynamic tensor shapes not yet supported" in r["log"], r["log"]
    v = ptekit("verify", unbounded, check=False)
    assert v.returncode == 1 and "values[4].val.Tensor.shape_dynamism (file offset 0x" in v.stderr, v.stderr
    assert "fully dynamic (DYNAMIC_UNBOUND)" in v.stderr
    # make bounds the unbounded input by the program's sizes too.
    assert make(unbounded, 65)[0].returncode == 1
