"""A structure-aware fuzzer for ``.ncz`` readers: mutate a real file as a hostile sender would,
reseal it with a valid CRC and SHA-256, and decode it in a worker process through the path every
tool takes (``container.from_bytes`` and the method's ``decode``).

Each case ends as one of:

* ``decoded``  the mutated file still decodes to a model;
* ``refused``  a ``NerfconvertError`` with a one-line message (``refused_late``: one the decoder's
  last-line guard, ``validate.hostile_input``, turned into that error);
* a finding:   ``traceback`` (any other exception), ``multiline`` (an error of several lines),
  ``crash`` (the worker died), ``hang`` (no answer in time), ``memory`` (peak RSS grew past the bound).

Used by ``tests/compress/test_hostile_files.py`` (a few hundred cases on tiny files) and by
``benchmarks/fuzz_ncz.py`` (10,000). ``tiny_vq_file`` / ``tiny_entropy_file`` build small real
files in a second, without training.
"""

from __future__ import annotations

import copy
import hashlib
import json
import lzma
import os
import random
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from nerfconvert.compress import container

FINDINGS = ("traceback", "multiline", "crash", "hang", "memory")
OUTCOMES = ("decoded", "refused", "refused_late") + FINDINGS


# ---- tiny real files ------------------------------------------------------------------------------------------
def _quiet():
    import contextlib
    import io

    return contextlib.redirect_stdout(io.StringIO())


def tiny_vq_file(seed: int = 0, resolution: int = 12) -> bytes:
    """A vq-compression file of a small untrained plenoxels grid (random importance)."""
    import copy as copy_

    import torch
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.data.scene_box import SceneBox

    from nerfconvert.compress.vq import codec
    from nerfconvert.compress.vq.compressor import VQSettings, build_states
    from nerfconvert.compress.tables import vq_tables_for

    torch.manual_seed(seed)
    config = copy_.deepcopy(all_methods["plenoxels"].pipeline.model)
    config.grid_resolutions = [resolution]
    config.upsample_fractions, config.prune_fractions = (), ()
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=4, metadata={})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    family = vq_tables_for(model)
    importance = {"grid": torch.rand(resolution**3) ** 4}
    settings = VQSettings(codebook_size=16, kmeans_iterations=3, kmeans_batch_size=256, keep_quantile=0.5)
    with _quiet():
        states = build_states(family, importance, settings)
    return codec.pack(family, states, {"steps": 1, "teacher_method": "plenoxels", "teacher_step": 1})


def tiny_entropy_file(seed: int = 0, resolution: int = 12, decoder_bits: int = 8) -> bytes:
    """An entropy-compression file of a small untrained tensorf (random latents); ``decoder_bits``
    16 writes the decoder in fp16 (as files from before quantised decoders)."""
    import copy as copy_

    import torch
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.data.scene_box import SceneBox

    from nerfconvert.compress.entropy import codec
    from nerfconvert.compress.entropy.coder import MaskedEntropyModel, PlaneDecoder, latent_size

    torch.manual_seed(seed)
    config = copy_.deepcopy(all_methods["tensorf"].pipeline.model)
    config.init_resolution, config.final_resolution = resolution, resolution
    config.num_den_components, config.num_color_components, config.appearance_dim = 2, 4, 6
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=4, metadata={})
    channels, hidden = 4, 8
    side = latent_size(resolution)
    entropy = MaskedEntropyModel(channels, (3, side, side))
    with torch.no_grad():
        entropy.mask_logits[:, 1] = torch.randn(3, side, side) * 3
    decoder = PlaneDecoder(channels, hidden, 6, bits=decoder_bits)
    latents = torch.randn(3, channels, side, side) * 3
    spec = {"preset": "tiny", "latent_channels": channels, "hidden_channels": hidden, "plane_channels": 6,
            "density_channels": 2, "plane_resolution": [resolution, resolution]}
    data, _ = codec.pack(model, entropy, decoder, latents, spec, {"steps": 1, "teacher_method": "tensorf"})
    return data


# ---- the file as editable parts -------------------------------------------------------------------------------
@dataclass
class Parts:
    ours: Dict[str, Any]
    """The nerfconvert JSON (method, architecture, metadata, sections)."""
    tensors: Dict[str, Any]
    """The safetensors entries (name -> dtype, shape, data_offsets)."""
    blob: bytes
    """The section bytes, as stored."""
    raw_header: Optional[bytes] = None
    """When set, the header bytes verbatim (a mutation of the JSON text itself)."""
    extra: Dict[str, Any] = field(default_factory=dict)


def split(data: bytes) -> Parts:
    payload = data[container._PREFIX_LEN : -container._DIGEST_LEN]
    (n,) = struct.unpack_from("<Q", payload)
    header = json.loads(payload[8 : 8 + n])
    ours = json.loads(header.pop("__metadata__")[container._META_KEY])
    return Parts(ours=ours, tensors=header, blob=payload[8 + n :])


def reseal(parts: Parts) -> bytes:
    """Parts -> file bytes with a valid prefix CRC and SHA-256 (as a hostile sender makes them)."""
    if parts.raw_header is not None:
        header_bytes = parts.raw_header
    else:
        header = {"__metadata__": {container._META_KEY: json.dumps(parts.ours, sort_keys=True)}, **parts.tensors}
        header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
        header_bytes += b" " * (-len(header_bytes) % 8)
    payload = struct.pack("<Q", len(header_bytes)) + header_bytes + parts.blob
    total = container._PREFIX_LEN + len(payload) + container._DIGEST_LEN
    prefix = container._PREFIX.pack(container.MAGIC, container.FORMAT_VERSION, total)
    prefix += struct.pack("<I", zlib.crc32(prefix))
    body = prefix + payload
    return body + hashlib.sha256(body).digest()


def bomb(codec: str, size: int) -> bytes:
    """``size`` zero bytes, coded small (a valid zlib or xz stream)."""
    if codec == "lzma":
        return _lzma_zeros(size)
    return _zlib_zeros(size)


def _zlib_zeros(size: int) -> bytes:
    """A zlib stream of ``size`` zeros in about size / 1000 bytes, in milliseconds: raw deflate of one
    1 MiB block after a full flush is the same bytes every time, so it is repeated, and the Adler-32
    of n zeros is (n mod 65521) << 16 | 1."""
    chunk = 1 << 20
    full, rest = divmod(size, chunk)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = b""
    if full:
        block = c.compress(bytes(chunk)) + c.flush(zlib.Z_FULL_FLUSH)  # the same bytes for every full block
        body = block * full
    end = c.compress(bytes(rest)) + c.flush()
    return b"\x78\xda" + body + end + struct.pack(">I", ((size % 65521) << 16) | 1)


def _lzma_zeros(size: int) -> bytes:
    c = lzma.LZMACompressor(format=lzma.FORMAT_XZ, preset=1)
    chunk = bytes(1 << 20)
    out = [c.compress(chunk) for _ in range(size // len(chunk))]
    out.append(c.compress(bytes(size % len(chunk))))
    out.append(c.flush())
    return b"".join(out)


# ---- mutations ----------------------------------------------------------------------------------------------
HOSTILE_VALUES: List[Any] = [
    None, True, False, 0, -1, 1, 2, 3, 7, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32, 2**40, 2**63 - 1, 2**63, 2**64,
    -(2**31), -(2**63), 1e308, -1e308, float("nan"), float("inf"), -0.0, 0.5, "", "a", "0", "-1", "1e9",
    "float32", "uint8", "object", "O", "V8", "<U4", "bool", "float16", "int64", "complex128", "S3",
    [], [0], [-1], [2**40], [1, 2**40], [[1]], ["3"], [None], [1.5], [2**20, 2**20], {}, {"a": 1}, {"__class__": "x"},
    "../../etc/passwd", "/tmp/x", "t/../s", "\x00", "é" * 40,
]


def _pick(rng: random.Random, values: List[Any]) -> Any:
    return copy.deepcopy(rng.choice(values))


def _paths(obj: Any, prefix: Tuple = (), depth: int = 0) -> List[Tuple]:
    out = [prefix] if prefix else []
    if depth > 5:
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(_paths(v, prefix + (k,), depth + 1))
    elif isinstance(obj, list) and len(obj) <= 16:
        for i, v in enumerate(obj):
            out.extend(_paths(v, prefix + (i,), depth + 1))
    return out


def _get_parent(obj: Any, path: Tuple):
    for key in path[:-1]:
        obj = obj[key]
    return obj


def _mutate_value(rng: random.Random, value: Any) -> Any:
    r = rng.random()
    if isinstance(value, bool) or r < 0.45:
        return _pick(rng, HOSTILE_VALUES)
    if isinstance(value, int):
        return rng.choice([value + 1, value - 1, value * 2, value * 1000, -value, 0, value ** 2 if abs(value) < 2**20 else value, 2**rng.randint(8, 40)])
    if isinstance(value, float):
        return rng.choice([value * 1e6, -value, 0.0, float("nan"), 1e300])
    if isinstance(value, str):
        return rng.choice([value + "x", value[:-1], value.upper(), "_" + value, "tensorf", "nerfacto", "plenoxels", "vm", "hash", "voxel", "fp16", "bits", "raw", "uint8", "fp32", "table", "scalar", "vq"])
    if isinstance(value, list):
        if value and r < 0.7:
            v = list(value)
            i = rng.randrange(len(v))
            v[i] = _mutate_value(rng, v[i])
            return v
        return rng.choice([value + value, value[:-1], value[::-1], [value], value + [1]])
    if isinstance(value, dict):
        v = dict(value)
        if v and r < 0.7:
            del v[rng.choice(list(v))]
        else:
            v[rng.choice(["_target", "__class__", "_private", "extra", "x"])] = _pick(rng, HOSTILE_VALUES)
        return v
    return _pick(rng, HOSTILE_VALUES)


def _mutate_json_path(rng: random.Random, root: Dict[str, Any], bias: Optional[str] = None) -> str:
    paths = _paths(root)
    if bias is not None:
        biased = [p for p in paths if bias in map(str, p)]
        paths = biased or paths
    if not paths:
        return "none"
    path = rng.choice(paths)
    parent = _get_parent(root, path)
    key = path[-1]
    if rng.random() < 0.1 and isinstance(parent, dict):
        del parent[key]
        return "delete " + "/".join(map(str, path))
    if rng.random() < 0.05 and isinstance(parent, dict):
        parent["_" + str(key)] = parent[key]
        return "private " + "/".join(map(str, path))
    parent[key] = _mutate_value(rng, parent[key])
    return "set " + "/".join(map(str, path))


class Mutator:
    """Seeded, structure-aware mutations of one file's parts. ``bomb_size``: the inflated size of the
    decompression bombs it plants (their coded bytes are made once)."""

    def __init__(self, original: bytes, bomb_size: int = 1 << 26) -> None:
        self.original = original
        self.base = split(original)
        self.bombs = {"zlib": bomb("zlib", bomb_size), "lzma": bomb("lzma", bomb_size)}
        self.bomb_size = bomb_size
        self.operators: List[Tuple[str, Callable[[random.Random, Parts], str]]] = [
            ("section_bytes", self.section_bytes), ("header_text", self.header_text), ("section_spec", self.section_spec),
            ("offsets", self.offsets), ("architecture", self.architecture), ("state", self.state),
            ("tables", self.tables), ("model_config", self.model_config), ("bomb", self.bomb),
            ("consistent_shape", self.consistent_shape), ("sections", self.sections), ("metadata", self.metadata),
        ]

    def case(self, seed: int) -> Tuple[bytes, str]:
        rng = random.Random(seed)
        parts = copy.deepcopy(self.base)
        done = []
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            name, op = rng.choice(self.operators)
            try:
                done.append(f"{name}: {op(rng, parts)}")
            except (TypeError, ValueError, KeyError, AttributeError, IndexError):
                done.append(f"{name}: skipped (an earlier mutation broke what it edits)")
        return reseal(parts), "; ".join(done)

    # -- operators --
    def _section(self, rng: random.Random, parts: Parts) -> str:
        return rng.choice(sorted(parts.ours["sections"])) if parts.ours.get("sections") else ""

    def _set_blob(self, parts: Parts, name: str, new: bytes) -> None:
        """Replace one section's stored bytes, shifting the others' offsets."""
        def offsets(entry):
            off = entry.get("data_offsets") if isinstance(entry, dict) else None
            ok = isinstance(off, list) and len(off) == 2 and all(type(v) is int and 0 <= v <= len(parts.blob) for v in off)
            return off if ok and off[0] <= off[1] else None

        if name not in parts.tensors or offsets(parts.tensors[name]) is None:
            parts.tensors[name] = {"dtype": "U8", "shape": [len(new)], "data_offsets": [len(parts.blob), len(parts.blob)]}
        a, b = parts.tensors[name]["data_offsets"]
        parts.blob = parts.blob[:a] + new + parts.blob[b:]
        delta = len(new) - (b - a)
        for entry in parts.tensors.values():
            off = offsets(entry)
            if off is not None and off[0] >= b and entry is not parts.tensors[name]:
                entry["data_offsets"] = [off[0] + delta, off[1] + delta]
        parts.tensors[name]["data_offsets"] = [a, a + len(new)]
        parts.tensors[name]["shape"] = [len(new)]

    def section_bytes(self, rng, parts):
        name = self._section(rng, parts)
        if not name:
            return "none"
        a, b = parts.tensors[name]["data_offsets"]
        blob = bytearray(parts.blob)
        for _ in range(rng.randint(1, 8)):
            if b > a:
                blob[rng.randrange(a, b)] = rng.randrange(256)
        parts.blob = bytes(blob)
        return name

    def header_text(self, rng, parts):
        header = {"__metadata__": {container._META_KEY: json.dumps(parts.ours, sort_keys=True)}, **parts.tensors}
        text = bytearray(json.dumps(header, separators=(",", ":")).encode())
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(text))
            choice = rng.random()
            if choice < 0.4:
                text[i] = rng.choice(b'0123456789-[]{}",:eE.ntfa\\')
            elif choice < 0.7:
                del text[i : i + rng.randint(1, 8)]
            else:
                text[i:i] = rng.choice([b"9999999999", b"[[[[[[[[", b"-", b'"_x":1,', b"1e999"])
        parts.raw_header = bytes(text) + b" " * (-len(text) % 8)
        return "text"

    def section_spec(self, rng, parts):
        name = self._section(rng, parts)
        if not name:
            return "none"
        key = rng.choice(["codec", "raw_bytes", "dtype", "shape", "shape", "raw_bytes", "dtype"])
        spec = parts.ours["sections"][name]
        spec[key] = _mutate_value(rng, spec.get(key))
        return f"{name}.{key}"

    def offsets(self, rng, parts):
        name = self._section(rng, parts)
        if not name:
            return "none"
        off = parts.tensors[name]["data_offsets"]
        parts.tensors[name]["data_offsets"] = rng.choice([
            [off[1], off[0]], [off[0], off[1] + rng.randint(1, 64)], [off[0] - 1, off[1]], [0, len(parts.blob) + 8],
            [_mutate_value(rng, off[0]), off[1]], [off[0], _mutate_value(rng, off[1])], off[:1], "x", None,
        ])
        return name

    def architecture(self, rng, parts):
        return _mutate_json_path(rng, parts.ours, None)

    def state(self, rng, parts):
        return _mutate_json_path(rng, parts.ours.get("architecture", {}), "state")

    def tables(self, rng, parts):
        arch = parts.ours.get("architecture", {})
        return _mutate_json_path(rng, arch, "tables" if "tables" in arch else "latent_shape")

    def model_config(self, rng, parts):
        return _mutate_json_path(rng, parts.ours.get("architecture", {}), "model_config")

    def metadata(self, rng, parts):
        return _mutate_json_path(rng, parts.ours, "metadata")

    def bomb(self, rng, parts):
        """A section replaced by a bomb, declaring its old size, a small one or the bomb's."""
        name = self._section(rng, parts)
        if not name:
            return "none"
        codec = rng.choice(["zlib", "lzma"])
        self._set_blob(parts, name, self.bombs[codec])
        spec = parts.ours["sections"][name]
        spec["codec"] = codec
        declared = rng.choice(["old", "small", "bomb"])
        if declared == "small":
            spec["raw_bytes"], spec["shape"], spec["dtype"] = 16, [16], "uint8"
        elif declared == "bomb":
            spec["raw_bytes"], spec["shape"], spec["dtype"] = self.bomb_size, [self.bomb_size], "uint8"
        return f"{name} <- {codec} bomb of {self.bomb_size:,} B declaring {declared}"

    def consistent_shape(self, rng, parts):
        """A state entry made huge everywhere at once (state spec, section spec and a bomb of that
        size): only the decode budget can refuse it."""
        state = parts.ours.get("architecture", {}).get("state", {})
        keys = [k for k, v in state.items() if isinstance(v, dict) and v.get("storage") in ("fp16", "fp32", "raw")
                and f"s/{k}" in parts.ours.get("sections", {})]
        if not keys:
            return "none"
        key = rng.choice(keys)
        itemsize = {"fp16": 2, "fp32": 4}.get(state[key]["storage"], 4)
        n = self.bomb_size // itemsize
        state[key]["shape"] = [n]
        name = f"s/{key}"
        self._set_blob(parts, name, self.bombs["zlib"])
        dtype = {"fp16": "f2", "fp32": "f4"}.get(state[key]["storage"], parts.ours["sections"][name]["dtype"])
        parts.ours["sections"][name].update({"codec": "zlib", "raw_bytes": n * itemsize, "shape": [n], "dtype": dtype})
        return f"{key} -> [{n}]"

    def sections(self, rng, parts):
        name = self._section(rng, parts)
        if not name:
            return "none"
        choice = rng.random()
        if choice < 0.4:
            del parts.ours["sections"][name]
            return f"drop {name}"
        if choice < 0.7:
            other = self._section(rng, parts)
            parts.tensors[name]["data_offsets"] = list(parts.tensors[other]["data_offsets"])
            parts.ours["sections"][name] = copy.deepcopy(parts.ours["sections"][other])
            return f"{name} aliases {other}"
        parts.tensors.pop(name)
        return f"drop entry {name}"


# ---- the worker ----------------------------------------------------------------------------------------------------
def _vm_hwm_kb() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def decode_once(data: bytes) -> Tuple[str, str]:
    """-> (outcome, message) for one file, in this process."""
    import traceback

    from nerfconvert import NerfconvertError

    try:
        ncz = container.from_bytes(data, source="the fuzzed .ncz")
        if ncz.method == "entropy-compression":
            from nerfconvert.compress.entropy import codec
        else:
            from nerfconvert.compress.vq import codec
        codec.decode(ncz)
        return "decoded", ""
    except NerfconvertError as err:
        message = str(err)
        if "\n" in message or not message:
            return "multiline", message
        return ("refused_late" if "unexpected" in message else "refused"), message
    except BaseException as err:  # noqa: BLE001 - every other outcome is a finding
        return "traceback", "".join(traceback.format_exception_only(type(err), err)).strip()


def worker_main() -> None:
    """Read length-prefixed files on stdin, answer one JSON line each on stdout."""
    import torch

    torch.set_num_threads(1)
    out = sys.stdout
    sys.stdout = sys.stderr  # whatever the decoders print stays off the answer channel
    stdin = sys.stdin.buffer
    while True:
        head = stdin.read(8)
        if len(head) < 8:
            return
        (n,) = struct.unpack("<Q", head)
        data = stdin.read(n)
        outcome, message = decode_once(data)
        out.write(json.dumps({"outcome": outcome, "message": message[:500], "hwm_kb": _vm_hwm_kb()}) + "\n")
        out.flush()


class Worker:
    """A decoding child process; restarted after a crash or hang. Its peak RSS (VmHWM) is compared
    with the peak after decoding the unmutated file once (the baseline)."""

    def __init__(self, original: Union[bytes, Sequence[bytes]], timeout: float = 120.0) -> None:
        self.originals = [original] if isinstance(original, (bytes, bytearray)) else list(original)
        self.timeout = timeout
        self.proc: Optional[subprocess.Popen] = None
        self.baseline_kb = 0
        self.restarts = 0

    def start(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "nerfconvert.compress.fuzz", "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        for original in self.originals:  # one worker can serve several files: each warms it up once
            answer = self._ask(original)
            if answer is None or answer["outcome"] != "decoded":
                raise RuntimeError(f"the unmutated file does not decode in the worker: {answer}")
            self.baseline_kb = answer["hwm_kb"]

    def _ask(self, data: bytes) -> Optional[Dict[str, Any]]:
        import select

        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(struct.pack("<Q", len(data)) + data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            return None
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            return {"outcome": "hang"}
        line = self.proc.stdout.readline()
        if not line:
            return None
        return json.loads(line)

    def decode(self, data: bytes) -> Dict[str, Any]:
        if self.proc is None or self.proc.poll() is not None:
            self.restarts += 1
            self.start()
        answer = self._ask(data)
        if answer is None:
            code = self.proc.wait()
            self.proc = None
            return {"outcome": "crash", "message": f"worker exited with {code}", "growth_mb": 0.0}
        if answer["outcome"] == "hang":
            self.stop()
            return {"outcome": "hang", "message": f"no answer in {self.timeout:.0f} s", "growth_mb": 0.0}
        answer["growth_mb"] = max(0, answer["hwm_kb"] - self.baseline_kb) / 1024.0
        return answer

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@dataclass
class FuzzResult:
    cases: int
    counts: Dict[str, int]
    peak_growth_mb: float
    seconds: float
    findings: List[Dict[str, Any]]
    by_operator: Dict[str, Dict[str, int]]


def run(original: bytes, cases: int, seed: int = 0, memory_bound_mb: float = 512.0, bomb_size: int = 1 << 26,
        timeout: float = 120.0, progress: Optional[Callable[[int, Dict[str, int]], None]] = None,
        worker: Optional[Worker] = None) -> FuzzResult:
    """``cases`` mutations of ``original`` (seeds ``seed``, ``seed + 1``, ...), each decoded by the worker
    (``worker``: a started one that ``original`` warmed up, shared with other runs and left running)."""
    mutator = Mutator(original, bomb_size)
    own = worker is None
    worker = worker or Worker(original, timeout)
    counts = {k: 0 for k in OUTCOMES}
    by_operator: Dict[str, Dict[str, int]] = {}
    findings = []
    peak = 0.0
    start = time.perf_counter()
    try:
        if own:
            worker.start()
        for i in range(cases):
            data, what = mutator.case(seed * 1_000_003 + i)
            answer = worker.decode(data)
            outcome = answer["outcome"]
            growth = float(answer.get("growth_mb", 0.0))
            peak = max(peak, growth)
            if growth > memory_bound_mb and outcome not in FINDINGS:
                outcome = "memory"
                worker.stop()  # VmHWM only grows: the next case starts a fresh worker, measured afresh
            counts[outcome] += 1
            for op in {part.split(":")[0] for part in what.split("; ")}:
                by_operator.setdefault(op, {}).setdefault(outcome, 0)
                by_operator[op][outcome] += 1
            if outcome in FINDINGS:
                findings.append({"case": i, "mutation": what, "outcome": outcome, "message": answer.get("message", ""),
                                 "growth_mb": growth})
            if progress is not None:
                progress(i + 1, counts)
    finally:
        if own:
            worker.stop()
    return FuzzResult(cases, counts, peak, time.perf_counter() - start, findings, by_operator)


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker_main()
