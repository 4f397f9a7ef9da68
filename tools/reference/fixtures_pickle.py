"""PyTorch checkpoint (.pth / .ckpt pickle) fixtures: two good files in both of torch's formats, the
tensors a reader must get out of them, and files a safe reader must refuse. Nothing here is ever
unpickled with Python's own (unsafe) pickle: the bad files are assembled opcode by opcode, checked
with pickletools (which only parses) and handed to torch.load(weights_only=True), which must refuse
each. Files are not byte-reproducible (torch writes a random .data/serialization_id into zip files
and storage keys that are memory addresses into legacy files); their contents are.

Tests/Fixtures/pickle/:
  zip-f32.pth          torch.save (zip format, archive folder "zip-f32/") of an OrderedDict:
                         f32 (2,3) float32; f16 (5,) float16; bf16 (3,2) bfloat16; f64 (2,) float64;
                         i64 (5,) int64 with +-2**40; i32 (3,) int32; i8 (4,) int8; u8 (4,) uint8; b (3,) bool;
                         transposed (4,3) = a (3,4) tensor's .t(): strides (1,4), storage of 12;
                         sliced (3,3) = a (4,6) tensor's [1:, ::2]: storage offset 6, strides (6,2), storage of 24;
                         shared_a (3,4) and shared_b (6,) = views of ONE 12-element storage (offsets 0 and 4);
                         param (2,2) an nn.Parameter (torch._utils._rebuild_parameter);
                         scalar () a 0-dim float32; empty (0,3) a float32 with no elements;
                         params_ema: a Module.state_dict() (OrderedDict carrying _metadata, so the pickle
                           has a BUILD with {"_metadata": ...} on it) with conv.weight (3,2,3,3), conv.bias (3,);
                         and plain values: epoch 3, global_step 10, big 2**40 (LONG1), neg -5, lr 0.00025,
                         name "x", unicode "héllo ✓", note None, flag True, betas (0.9, 0.999) (a tuple),
                         milestones [1, 2, 3] (a list).
  legacy.pth           the same object saved with _use_new_zipfile_serialization=False (pre-1.6 format).
  plain-values.pth     a weight "w" (2,3) next to a set, Counter, bytearray, dtype, device and
                       torch.Size, all of which torch.load(weights_only=True) allows.
  expected.safetensors every tensor of the object above (both files hold the same one), key = path joined
                       with "." ("params_ema.conv.weight"), contiguous, in its own dtype (all nine dtypes
                       kept: F32 F16 BF16 F64 I64 I32 I8 U8 BOOL; the 0-dim and the empty tensor too).
                       __metadata__["values"] is the JSON of the non-tensor values (tuples as lists),
                       __metadata__["dtypes"] the JSON {key: torch dtype}, __metadata__["kinds"] marks
                       "param" as a Parameter. A reader must give exactly these tensors for both .pth files.

Malicious: a reader must refuse each, and must not execute anything (every payload, if ever run, would
only write /tmp/sdflow-pwned). The error torch.load(f, weights_only=True) gives is noted for each.
  malicious-os-system.pkl                 GLOBAL 'os system' + REDUCE of a shell command (protocol 2).
                                          torch: "Trying to load unsupported GLOBAL os.system whose module os is blocked."
  malicious-builtins-eval.pkl             GLOBAL 'builtins eval' + REDUCE of "__import__('os').system(...)".
                                          torch: "Unsupported global: GLOBAL eval was not an allowed global by default."
  malicious-builtins-exec-stack-global.pkl protocol 4: SHORT_BINUNICODE 'builtins', 'exec', STACK_GLOBAL, REDUCE.
                                          torch: "Unsupported operand 140" (it has neither SHORT_BINUNICODE (140) nor
                                          STACK_GLOBAL (147): it only reads what protocol 2 writes).
  malicious-subprocess-popen.pkl          GLOBAL 'subprocess Popen' + REDUCE (['sh', '-c', cmd],).
                                          torch: "Unsupported global: GLOBAL subprocess.Popen was not an allowed global by default."
  malicious-rebuild-tensor-fake-storage.pkl GLOBAL 'torch._utils _rebuild_tensor_v2' (an allowed function) called
                                          with a plain tuple ('storage', FloatStorage, '0', 'cpu', 4) that did NOT come
                                          through BINPERSID: a reader must only take storages from persistent ids.
                                          torch refuses only by accident: "'tuple' object has no attribute 'dtype'"
                                          (an AttributeError raised inside _rebuild_tensor_v2, not an UnpicklingError).
  malicious-builtin-getattr-py2.pkl       GLOBAL '__builtin__ getattr' and '__builtin__ __import__' (Python 2 names, which
                                          pickle maps to builtins): getattr(__import__('os'), 'system')(cmd).
                                          torch: "Unsupported global: GLOBAL getattr was not an allowed global by default."
  malicious-inst.pkl                      no PROTO: MARK, BINUNICODE cmd, INST 'os system' (the global is inside the
                                          opcode, no GLOBAL precedes it). torch: "Unsupported operand 105".
  malicious-obj.pkl                       protocol 2: MARK, GLOBAL 'os system', BINUNICODE cmd, OBJ.
                                          torch: refused at the GLOBAL (os is blocked), before it would meet OBJ, which it
                                          does not implement either ("Unsupported operand 111").
  malicious-build-list.pkl                BUILD on a list (EMPTY_LIST, then state {'__setstate__': 'x'}), no forbidden
                                          global at all: BUILD is only for OrderedDict (state a dict, e.g. _metadata),
                                          Parameter and legacy tensors. torch: "Can only build Tensor, Parameter,
                                          OrderedDict or types allowlisted via `add_safe_globals`, but got <class 'list'>".
  malicious-build-setstate.pkl            the __setstate__ injection: OrderedDict(), BUILD (None, {'__setstate__': exec})
                                          (a non-dict state: slot state), then BUILD "code" which plain pickle turns into
                                          exec("code"). torch: refused at GLOBAL builtins.exec.
  malicious-os-system-zip.pth             a well-formed zip checkpoint (archive folder "archive/", data/0 present) whose
                                          data.pkl is an OrderedDict with a real tensor "conv.weight" and a value
                                          "payload" = os.system(cmd). torch: "... GLOBAL os.system whose module os is blocked."

Corrupt but harmless: a reader must fail cleanly (an error, no crash, no huge allocation).
  corrupt-truncated.pth          zip-f32.pth cut to its first 60% (no central directory).
                                 torch: "PytorchStreamReader failed reading zip archive: failed finding central directory".
  corrupt-missing-storage.pth    zip whose data.pkl has tensors on storage keys '0' and '1' but only data/0 exists.
                                 torch: "PytorchStreamReader failed locating file data/1: file not found".
  corrupt-storage-too-small.pth  tensor of size (4,4) strides (4,1) on a FloatStorage of 8 elements (data/0 is 32 bytes;
                                 the persistent id says 8 too). torch: "Trying to resize storage that is not resizable".
                                 A reader must check offset + sum((size_i - 1) * stride_i) < numel for every tensor.
  corrupt-binunicode8-huge.pkl   protocol 4 BINUNICODE8 declaring 2**62 bytes, followed by 5 bytes and STOP.
                                 torch: "Unsupported operand 141" (it has no BINUNICODE8).
  corrupt-binunicode-huge.pkl    protocol 2 BINUNICODE (the opcode torch does read) declaring 0xFFFFFFF0 bytes, followed
                                 by 5 bytes and STOP. torch reads the 6 bytes that are there as the string, then
                                 fails with a bare EOFError. A reader must check the length against what is left.
"""
import io
import json
import os
import pickle
import pickletools
import struct
import zipfile
from collections import OrderedDict

import torch
from safetensors.torch import save_file

from common import REPO, fixture_path

PWNED = "/tmp/sdflow-pwned"
CMD = f"echo sdflow-pwned > {PWNED}"


# ----------------------------------------------------------------------------------------------
# The good files


class _Holder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3)


def make_state():
    torch.manual_seed(2024)
    base_t = torch.randn(3, 4)
    base_s = torch.randn(4, 6)
    shared = torch.arange(12, dtype=torch.float32) * 0.5 - 2
    state = OrderedDict()
    state["f32"] = torch.randn(2, 3)
    state["f16"] = torch.randn(5).half()
    state["bf16"] = torch.randn(3, 2).bfloat16()
    state["f64"] = torch.randn(2).double()
    state["i64"] = torch.tensor([-(2**40), -1, 0, 1, 2**40 + 7], dtype=torch.int64)
    state["i32"] = torch.tensor([-7, 0, 2**31 - 1], dtype=torch.int32)
    state["i8"] = torch.tensor([-128, -1, 0, 127], dtype=torch.int8)
    state["u8"] = torch.tensor([0, 1, 128, 255], dtype=torch.uint8)
    state["b"] = torch.tensor([True, False, True])
    state["transposed"] = base_t.t()
    state["sliced"] = base_s[1:, ::2]
    state["shared_a"] = shared.view(3, 4)
    state["shared_b"] = shared[4:10]
    state["param"] = torch.nn.Parameter(torch.randn(2, 2))
    state["scalar"] = torch.tensor(3.5)
    state["empty"] = torch.zeros(0, 3)
    state["params_ema"] = _Holder().state_dict()
    state["epoch"] = 3
    state["global_step"] = 10
    state["big"] = 2**40
    state["neg"] = -5
    state["lr"] = 0.00025
    state["name"] = "x"
    state["unicode"] = "héllo ✓"
    state["note"] = None
    state["flag"] = True
    state["betas"] = (0.9, 0.999)
    state["milestones"] = [1, 2, 3]
    assert not state["transposed"].is_contiguous() and state["sliced"].storage_offset() == 6
    assert state["shared_a"].untyped_storage().data_ptr() == state["shared_b"].untyped_storage().data_ptr()
    assert hasattr(state["params_ema"], "_metadata")
    return state


def flatten(obj, prefix=""):
    """(tensors, values): tensors by dotted path, and the non-tensor leaves as JSON-able values."""
    tensors, values = {}, {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            tensors[key] = v
        elif isinstance(v, dict):
            t, vals = flatten(v, key + ".")
            tensors.update(t)
            values.update(vals)
        else:
            values[key] = list(v) if isinstance(v, tuple) else v
    return tensors, values


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.detach(), b.detach())


def check_loaded(loaded, state):
    want_t, want_v = flatten(state)
    got_t, got_v = flatten(loaded)
    assert want_t.keys() == got_t.keys(), (want_t.keys(), got_t.keys())
    for k in want_t:
        assert same(want_t[k], got_t[k]), k
    assert got_v == want_v, (got_v, want_v)
    assert isinstance(loaded["param"], torch.nn.Parameter)
    assert isinstance(loaded["betas"], tuple)


def legacy_layout(path):
    """Walks the legacy format by hand and returns {storage key: bytes}, checking that the file is:
    pickle(MAGIC_NUMBER) pickle(PROTOCOL_VERSION) pickle(sys_info) pickle(object) pickle(sorted keys),
    then per key in that order: int64 little-endian element count, count * element size raw bytes."""
    from torch import _weights_only_unpickler as wou

    data = open(path, "rb").read()
    f = io.BytesIO(data)
    assert wou.load(f) == 0x1950A86A20F9469CFC6C
    assert wou.load(f) == 1001
    sys_info = wou.load(f)
    assert sys_info["protocol_version"] == 1001 and sys_info["little_endian"] is True, sys_info
    print("legacy sys_info:", sys_info)
    seen = {}

    class Recorder(wou.Unpickler):
        def persistent_load(self, pid):
            typename, storage_type, key, location, numel, view_metadata = pid
            assert typename == "storage" and location == "cpu" and view_metadata is None, pid
            seen[key] = storage_type.dtype
            return torch.storage.TypedStorage(
                wrap_storage=torch.UntypedStorage(numel * torch._utils._element_size(storage_type.dtype)),
                dtype=storage_type.dtype, _internal=True)

    Recorder(f).load()
    keys = wou.load(f)
    assert keys == sorted(seen) and set(keys) == set(seen), (keys, seen)
    out = {}
    for key in keys:
        (count,) = struct.unpack("<q", f.read(8))
        size = count * torch._utils._element_size(seen[key])
        out[key] = f.read(size)
        assert len(out[key]) == size
    assert f.read() == b"", "bytes left after the last storage"
    return out


def write_good(state):
    out = {}
    zip_path = fixture_path("pickle", "zip-f32.pth")
    torch.save(state, zip_path)
    legacy_path = fixture_path("pickle", "legacy.pth")
    torch.save(state, legacy_path, _use_new_zipfile_serialization=False)
    for path in (zip_path, legacy_path):
        check_loaded(torch.load(path, weights_only=True), state)
    names = zipfile.ZipFile(zip_path).namelist()
    assert names[0] == "zip-f32/data.pkl" and "zip-f32/byteorder" in names, names
    legacy_storages = legacy_layout(legacy_path)
    print("zip records:", names)
    print("legacy storages:", {k: len(v) for k, v in legacy_storages.items()})

    tensors, values = flatten(state)
    expected = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    metadata = {
        "values": json.dumps(values, ensure_ascii=False),
        "dtypes": json.dumps({k: str(v.dtype) for k, v in expected.items()}),
        "kinds": json.dumps({"param": "Parameter"}),
    }
    exp_path = fixture_path("pickle", "expected.safetensors")
    save_file(expected, exp_path, metadata=metadata)
    out["expected"] = expected
    for p in (zip_path, legacy_path, exp_path):
        print(f"wrote {os.path.relpath(p, REPO)} ({os.path.getsize(p)} bytes)")
    return out


# ----------------------------------------------------------------------------------------------
# Opcode helpers for the hand-made pickles

PROTO2 = b"\x80\x02"
MARK, STOP, TUPLE, TUPLE1, TUPLE2 = b"(", b".", b"t", b"\x85", b"\x86"
REDUCE, BUILD, BINPERSID, SETITEM, SETITEMS = b"R", b"b", b"Q", b"s", b"u"
EMPTY_TUPLE, EMPTY_LIST, EMPTY_DICT, APPENDS, NONE, NEWFALSE = b")", b"]", b"}", b"e", b"N", b"\x89"


def uni(s):  # BINUNICODE
    b = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(b)) + b


def short_uni(s):  # SHORT_BINUNICODE (protocol 4)
    b = s.encode("utf-8")
    return b"\x8c" + bytes([len(b)]) + b


def glob(module, name):  # GLOBAL
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def int1(n):  # BININT1
    return b"K" + bytes([n])


def small_tuple(ns):
    return MARK + b"".join(int1(n) for n in ns) + TUPLE


def ordered_dict():
    return glob("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE


def tensor_ops(key, numel, size, stride, offset=0, storage_type="FloatStorage"):
    """_rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict()), as torch writes it."""
    pid = MARK + uni("storage") + glob("torch", storage_type) + uni(key) + uni("cpu") + int1(numel) + TUPLE
    return (glob("torch._utils", "_rebuild_tensor_v2") + MARK + pid + BINPERSID + int1(offset)
            + small_tuple(size) + small_tuple(stride) + NEWFALSE + ordered_dict() + TUPLE + REDUCE)


def write_zip_pth(path, data_pkl, storages, prefix="archive"):
    """A zip checkpoint with torch's records in torch's order (stored, not compressed)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", data_pkl)
        z.writestr(f"{prefix}/.format_version", "1")
        z.writestr(f"{prefix}/.storage_alignment", "64")
        z.writestr(f"{prefix}/byteorder", "little")
        for key, raw in storages.items():
            z.writestr(f"{prefix}/data/{key}", raw)
        z.writestr(f"{prefix}/version", "3\n")
        z.writestr(f"{prefix}/.data/serialization_id", "0" * 40)


def malicious_pickles():
    exec_code = f"__import__('os').system({CMD!r})"
    files = {}
    files["malicious-os-system.pkl"] = PROTO2 + glob("os", "system") + uni(CMD) + TUPLE1 + REDUCE + STOP
    files["malicious-builtins-eval.pkl"] = PROTO2 + glob("builtins", "eval") + uni(exec_code) + TUPLE1 + REDUCE + STOP
    files["malicious-builtins-exec-stack-global.pkl"] = (
        b"\x80\x04" + short_uni("builtins") + short_uni("exec") + b"\x93" + uni(exec_code) + TUPLE1 + REDUCE + STOP)
    files["malicious-subprocess-popen.pkl"] = (
        PROTO2 + glob("subprocess", "Popen") + EMPTY_LIST + MARK + uni("sh") + uni("-c") + uni(CMD) + APPENDS
        + TUPLE1 + REDUCE + STOP)
    fake_storage = MARK + uni("storage") + glob("torch", "FloatStorage") + uni("0") + uni("cpu") + int1(4) + TUPLE
    files["malicious-rebuild-tensor-fake-storage.pkl"] = (
        PROTO2 + glob("torch._utils", "_rebuild_tensor_v2") + MARK + fake_storage + int1(0) + small_tuple((2, 2))
        + small_tuple((2, 1)) + NEWFALSE + ordered_dict() + TUPLE + REDUCE + STOP)
    files["malicious-builtin-getattr-py2.pkl"] = (
        PROTO2 + glob("__builtin__", "getattr") + glob("__builtin__", "__import__") + uni("os") + TUPLE1 + REDUCE
        + uni("system") + TUPLE2 + REDUCE + uni(CMD) + TUPLE1 + REDUCE + STOP)
    files["malicious-inst.pkl"] = MARK + uni(CMD) + b"ios\nsystem\n" + STOP
    files["malicious-obj.pkl"] = PROTO2 + MARK + glob("os", "system") + uni(CMD) + b"o" + STOP
    files["malicious-build-list.pkl"] = (
        PROTO2 + EMPTY_LIST + EMPTY_DICT + uni("__setstate__") + uni("x") + SETITEM + BUILD + STOP)
    files["malicious-build-setstate.pkl"] = (
        PROTO2 + ordered_dict() + NONE + EMPTY_DICT + uni("__setstate__") + glob("builtins", "exec") + SETITEM
        + TUPLE2 + BUILD + uni(f"import os; os.system({CMD!r})") + BUILD + STOP)
    files["corrupt-binunicode8-huge.pkl"] = b"\x80\x04" + b"\x8d" + struct.pack("<Q", 2**62) + b"hello" + STOP
    files["corrupt-binunicode-huge.pkl"] = PROTO2 + b"X" + struct.pack("<I", 0xFFFFFFF0) + b"hello" + STOP
    for name, data in files.items():
        path = fixture_path("pickle", name)
        with open(path, "wb") as f:
            f.write(data)
        if "huge" not in name:  # pickletools parses (never executes); it must accept the well-formed ones
            pickletools.dis(data, out=io.StringIO())
    return list(files)


def zip_files(good_zip):
    names = []
    weight = torch.arange(4, dtype=torch.float32).numpy().tobytes()

    # A control, built with the same helpers, that torch must load: proves the bad ones are bad only as stated.
    control = PROTO2 + ordered_dict() + MARK + uni("conv.weight") + tensor_ops("0", 4, (2, 2), (2, 1)) + SETITEMS + STOP
    buf = io.BytesIO()
    write_zip_pth(buf, control, {"0": weight})
    loaded = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    assert torch.equal(loaded["conv.weight"], torch.arange(4.0).reshape(2, 2))

    evil = (PROTO2 + ordered_dict() + MARK + uni("conv.weight") + tensor_ops("0", 4, (2, 2), (2, 1))
            + uni("payload") + glob("os", "system") + uni(CMD) + TUPLE1 + REDUCE + SETITEMS + STOP)
    write_zip_pth(fixture_path("pickle", "malicious-os-system-zip.pth"), evil, {"0": weight})
    names.append("malicious-os-system-zip.pth")

    missing = (PROTO2 + ordered_dict() + MARK + uni("a") + tensor_ops("0", 4, (4,), (1,))
               + uni("b") + tensor_ops("1", 4, (4,), (1,)) + SETITEMS + STOP)
    write_zip_pth(fixture_path("pickle", "corrupt-missing-storage.pth"), missing, {"0": weight})
    names.append("corrupt-missing-storage.pth")

    small = PROTO2 + ordered_dict() + MARK + uni("a") + tensor_ops("0", 8, (4, 4), (4, 1)) + SETITEMS + STOP
    write_zip_pth(fixture_path("pickle", "corrupt-storage-too-small.pth"), small,
                  {"0": torch.zeros(8).numpy().tobytes()})
    names.append("corrupt-storage-too-small.pth")

    data = open(good_zip, "rb").read()
    with open(fixture_path("pickle", "corrupt-truncated.pth"), "wb") as f:
        f.write(data[: len(data) * 6 // 10])
    names.append("corrupt-truncated.pth")
    return names


def check_refused(names):
    """torch.load(weights_only=True) must refuse every bad file; prints its error (first line)."""
    for name in sorted(names):
        path = fixture_path("pickle", name)
        try:
            torch.load(path, weights_only=True)
        except Exception as e:  # noqa: BLE001 - any refusal is what we want; the message is the point
            msg = str(e).split("\n\nCheck the documentation of torch.load")[0]
            msg = msg.split("WeightsUnpickler error: ")[-1]
            first = ([line for line in msg.strip().splitlines() if line.strip()] or ["(no message)"])[-1]
            print(f"  {name}: {type(e).__name__}: {first[:220]}")
        else:
            raise AssertionError(f"torch.load(weights_only=True) accepted {name}")


def write_plain_values():
    """plain-values.pth: a weight next to the other plain values torch.load(weights_only=True) allows: a set,
    a Counter, a bytearray, a dtype, a device and a torch.Size (a reader keeps "w" and drops the rest)."""
    import collections
    torch.manual_seed(3)
    torch.save({"w": torch.randn(2, 3), "tags": {1, 2}, "counts": collections.Counter(a=2, b=1),
                "raw": bytearray(b"xy"), "dtype": torch.float16, "device": torch.device("cpu"), "size": torch.Size([2, 3])},
               fixture_path("pickle", "plain-values.pth"))
    torch.load(fixture_path("pickle", "plain-values.pth"), weights_only=True)  # torch reads it too


def make():
    if os.path.exists(PWNED):
        os.remove(PWNED)
    state = make_state()
    write_good(state)
    write_plain_values()
    names = malicious_pickles() + zip_files(fixture_path("pickle", "zip-f32.pth"))
    print("torch.load(weights_only=True) refusals:")
    check_refused(names)
    assert not os.path.exists(PWNED), "a payload ran"
    folder = os.path.dirname(fixture_path("pickle", "expected.safetensors"))
    total = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))
    print(f"Tests/Fixtures/pickle: {len(os.listdir(folder))} files, {total} bytes")


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["plain-values"]:  # that file alone (the others are not byte-reproducible)
        write_plain_values()
    else:
        make()
