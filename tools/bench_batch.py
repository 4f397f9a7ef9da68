#!/usr/bin/env python3
"""Batch memory/throughput benchmark for sdflow (Python 3 standard library only).

Runs folder workflows over generated test images and reports, per run, the wall time,
items/s and the child's peak resident memory (ru_maxrss from wait4), so that the memory
growth with the batch size is visible, optionally for several binaries side by side.

Rows (default): resize-folder over 100, 1000 and 2000 images of 512x512 and
batch-img2img (bundled demo model) over 50 and 500 images of 64x64.

Examples:
  tools/bench_batch.py --sdflow .build/release/sdflow
  tools/bench_batch.py --sdflow before=/tmp/sdflow-before/.build/release/sdflow \\
      --sdflow after=.build/release/sdflow --work /tmp/sdflow-bench --json bench.json
  tools/bench_batch.py --sdflow .build/release/sdflow --rows resize:20,resize:60,img2img:10

Each run gets a fresh, empty --cache-dir and output folder (both deleted after the run),
--quiet, and the optional --threads. Test images are written once per (size, count) into
WORK/images/WxH/pool and shown to sdflow through folders of hard links (symlinks if hard
links fail) holding exactly N files; with --work they are kept and reused by later runs.
"""

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import struct
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

WORKFLOWS = {
    # name: (workflow file, default image size, description)
    "resize": ("workflows/resize-folder.yaml", (512, 512), "resize-folder"),
    "img2img": ("workflows/batch-img2img.yaml", (64, 64), "batch-img2img"),
}
DEFAULT_ROWS = "resize:100,resize:1000,resize:2000,img2img:50,img2img:500"
GENERATOR_VERSION = 1


# ----------------------------------------------------------------------------- PNG writing

def png_chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def write_png_rgb8(path, width, height, scanlines):
    """scanlines: bytes of height * (1 + 3 * width), each line led by its filter byte."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(scanlines, 6)) + png_chunk(b"IEND", b""))
    tmp = str(path) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# Offset tables: bytes.translate with _SHIFT[c] adds c (mod 256) to every byte at C speed.
_SHIFT = [bytes((v + c) & 255 for v in range(256)) for c in range(256)]


def test_image_scanlines(width, height, seed, index):
    """Deterministic smooth gradients plus a few seeded noise blocks; differs per index.

    Row y is a per-image horizontal gradient row shifted by a smooth vertical offset.
    Rows without noise use PNG filter 1 (Sub), whose output is the same for every row
    except the first pixel, so the files compress to a few tens of KiB.
    """
    rng = random.Random(seed * 1_000_003 + index)
    rowlen = 3 * width
    # Horizontal gradient: a different ramp per channel.
    slopes = [rng.uniform(0.2, 2.0) * rng.choice((-1, 1)) for _ in range(3)]
    phases = [rng.randrange(256) for _ in range(3)]
    base = bytearray(rowlen)
    for x in range(width):
        for c in range(3):
            base[3 * x + c] = int(phases[c] + slopes[c] * x * 256 / width) & 255
    base = bytes(base)
    sub_tail = bytes((base[i] - base[i - 3]) & 255 for i in range(3, rowlen))
    # Vertical offset per row: a smooth ramp, different per image.
    vslope = rng.uniform(0.3, 1.5) * 256 / height
    voff = rng.randrange(256)
    # Noise blocks: (y0, y1, x0, x1) in pixels.
    blocks = []
    bsize = max(2, min(width, height) // 16)
    for _ in range(rng.randint(2, 4)):
        bw, bh = rng.randint(bsize // 2, bsize), rng.randint(bsize // 2, bsize)
        x0, y0 = rng.randrange(width - bw + 1), rng.randrange(height - bh + 1)
        blocks.append((y0, y0 + bh, x0, x0 + bw))
    noisy = {}
    for y0, y1, x0, x1 in blocks:
        for y in range(y0, y1):
            noisy.setdefault(y, []).append((x0, x1))
    out = bytearray()
    for y in range(height):
        shift = _SHIFT[int(voff + vslope * y) & 255]
        if y in noisy:
            row = bytearray(base.translate(shift))
            for x0, x1 in noisy[y]:
                row[3 * x0:3 * x1] = rng.randbytes(3 * (x1 - x0))
            out += b"\x00"
            out += row
        else:
            out += b"\x01"
            out += base[:3].translate(shift)
            out += sub_tail
    return bytes(out)


def ensure_pool(work, width, height, count, seed, log):
    """WORK/images/WxH/pool holds >= count images (generated once, reused)."""
    pool = work / "images" / f"{width}x{height}" / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    stamp = pool / "generator.json"
    meta = {"version": GENERATOR_VERSION, "seed": seed, "width": width, "height": height}
    if stamp.exists():
        try:
            if json.loads(stamp.read_text()) != meta:
                shutil.rmtree(pool)
                pool.mkdir(parents=True)
        except (ValueError, OSError):
            shutil.rmtree(pool)
            pool.mkdir(parents=True)
    stamp.write_text(json.dumps(meta))
    missing = [i for i in range(count) if not (pool / image_name(i)).exists()]
    if missing:
        t0 = time.monotonic()
        for i in missing:
            write_png_rgb8(pool / image_name(i), width, height,
                           test_image_scanlines(width, height, seed, i))
        dt = time.monotonic() - t0
        size = sum((pool / image_name(i)).stat().st_size for i in missing)
        log(f"generated {len(missing)} images of {width}x{height} in {dt:.1f} s "
            f"({size / 2**20:.1f} MiB)")
    return pool


def image_name(i):
    return f"img_{i:05d}.png"


def subset_folder(work, pool, width, height, count):
    """A folder with exactly `count` links to the pool's first images."""
    folder = work / "images" / f"{width}x{height}" / f"n{count}"
    want = {image_name(i) for i in range(count)}
    if folder.exists():
        have = set(os.listdir(folder))
        if have == want:
            return folder
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in sorted(want):
        try:
            os.link(pool / name, folder / name)
        except OSError:
            os.symlink(pool / name, folder / name)
    return folder


# ----------------------------------------------------------------------------- running

def run_child(argv, stdout_path, stderr_path, timeout):
    """Spawn argv, wait4 it; returns (exit code or -signal, wall s, peak RSS KiB, timed_out)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, str(stdout_path), flags, 0o644),
               (os.POSIX_SPAWN_OPEN, 2, str(stderr_path), flags, 0o644)]
    t0 = time.monotonic()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    timed_out = threading.Event()
    timer = None
    if timeout:
        def kill():
            timed_out.set()
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        timer = threading.Timer(timeout, kill)
        timer.start()
    try:
        while True:
            try:
                _, status, usage = os.wait4(pid, 0)
                break
            except InterruptedError:
                continue
            except KeyboardInterrupt:
                os.kill(pid, 2)
                raise
    finally:
        if timer:
            timer.cancel()
    wall = time.monotonic() - t0
    code = os.waitstatus_to_exitcode(status)
    rss_kib = usage.ru_maxrss  # KiB on Linux
    if sys.platform == "darwin":
        rss_kib //= 1024  # bytes on macOS
    return code, wall, rss_kib, timed_out.is_set(), usage


def tree_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def tail(path, lines=15):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


# ----------------------------------------------------------------------------- arguments

def parse_binaries(values):
    bins = []
    for v in values:
        if "=" in v and not os.path.exists(v):
            name, path = v.split("=", 1)
        else:
            name, path = None, v
        path = os.path.abspath(os.path.expanduser(path))
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            sys.exit(f"bench_batch: not an executable: {path}")
        bins.append([name, path])
    # Default names: "sdflow", or the parent folders when several are unnamed.
    for i, b in enumerate(bins):
        if b[0] is None:
            b[0] = "sdflow" if len(bins) == 1 else f"bin{i + 1}"
    names = [b[0] for b in bins]
    if len(set(names)) != len(names):
        sys.exit(f"bench_batch: duplicate binary names: {names}")
    return [tuple(b) for b in bins]


def parse_size(text):
    try:
        w, h = text.lower().split("x")
        w, h = int(w), int(h)
        assert w > 0 and h > 0
        return w, h
    except (ValueError, AssertionError):
        sys.exit(f"bench_batch: bad size {text!r} (want WxH, e.g. 512x512)")


def parse_sizes(text):
    sizes = {k: v[1] for k, v in WORKFLOWS.items()}
    if text:
        for item in text.split(","):
            if "=" not in item:
                sys.exit(f"bench_batch: bad --sizes item {item!r} (want WORKFLOW=WxH)")
            k, v = item.split("=", 1)
            if k not in WORKFLOWS:
                sys.exit(f"bench_batch: unknown workflow {k!r} (known: {', '.join(WORKFLOWS)})")
            sizes[k] = parse_size(v)
    return sizes


def parse_rows(text, sizes):
    rows = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            kind, rest = item.split(":", 1)
            size = sizes.get(kind)
            if "@" in rest:
                rest, s = rest.split("@", 1)
                size = parse_size(s)
            n = int(rest)
            assert n > 0
        except (ValueError, AssertionError):
            sys.exit(f"bench_batch: bad row {item!r} (want WORKFLOW:N or WORKFLOW:N@WxH)")
        if kind not in WORKFLOWS:
            sys.exit(f"bench_batch: unknown workflow {kind!r} (known: {', '.join(WORKFLOWS)})")
        rows.append((kind, n, size))
    if not rows:
        sys.exit("bench_batch: no rows")
    return rows


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    default_repo = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(
        description="sdflow batch memory/throughput benchmark (peak RSS and items/s per batch size).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="rows: WORKFLOW:N[@WxH], workflows: " + ", ".join(
            f"{k} ({v[0]}, default {v[1][0]}x{v[1][1]})" for k, v in WORKFLOWS.items()))
    ap.add_argument("--sdflow", action="append", required=True, metavar="[NAME=]PATH",
                    help="sdflow binary; repeat as NAME=PATH to compare binaries side by side")
    ap.add_argument("--repo", default=str(default_repo),
                    help="repository with workflows/ and models/ (default: %(default)s)")
    ap.add_argument("--work", help="scratch folder (default: a temporary one, removed at the end); "
                    "generated images are kept there and reused")
    ap.add_argument("--rows", default=DEFAULT_ROWS, help="rows to run (default: %(default)s)")
    ap.add_argument("--sizes", default="",
                    help="image size per workflow, e.g. resize=512x512,img2img=64x64 "
                    "(the defaults); a row's @WxH overrides it")
    ap.add_argument("--threads", type=int, help="pass --threads N to sdflow (default: omitted)")
    ap.add_argument("--seed", type=int, default=1234, help="test image seed (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=0, help="kill a run after this many seconds")
    ap.add_argument("--extra", action="append", default=[], metavar="ARG",
                    help="extra argument for sdflow run (repeatable, e.g. --extra=--fast)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--keep-outputs", action="store_true",
                    help="keep each run's output and cache folders (disk heavy)")
    args = ap.parse_args()

    binaries = parse_binaries(args.sdflow)
    sizes = parse_sizes(args.sizes)
    rows = parse_rows(args.rows, sizes)
    repo = Path(args.repo).resolve()
    for kind in {r[0] for r in rows}:
        if not (repo / WORKFLOWS[kind][0]).is_file():
            sys.exit(f"bench_batch: {repo / WORKFLOWS[kind][0]} not found (see --repo)")
    model = repo / "models" / "sdflow-demo"
    if any(r[0] == "img2img" for r in rows) and not model.is_dir():
        sys.exit(f"bench_batch: {model} not found (see --repo)")

    temp_work = args.work is None
    work = Path(tempfile.mkdtemp(prefix="sdflow-bench-") if temp_work else args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    try:
        ncpu = len(os.sched_getaffinity(0))
    except AttributeError:
        ncpu = os.cpu_count()
    env = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "nproc": ncpu,
        "host": platform.node(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "threads": args.threads,
        "extra_args": args.extra,
        "repo": str(repo),
        "binaries": {n: p for n, p in binaries},
    }
    header = [f"# sdflow batch benchmark, {env['date']}",
              "",
              f"CPU: {env['cpu']}, nproc {env['nproc']}, Linux {env['kernel']}",
              f"threads: {args.threads if args.threads else 'sdflow default'}"
              + (f", extra args: {' '.join(args.extra)}" if args.extra else ""),
              "binaries: " + ", ".join(f"{n} = {p}" for n, p in binaries),
              ""]
    print("\n".join(header), flush=True)

    # Generate the images: the largest count per size, subsets as link folders.
    gen_t0 = time.monotonic()
    largest = {}
    for kind, n, size in rows:
        largest[size] = max(largest.get(size, 0), n)
    pools = {size: ensure_pool(work, size[0], size[1], n, args.seed, log)
             for size, n in sorted(largest.items())}
    folders = {(size, n): subset_folder(work, pools[size], size[0], size[1], n)
               for _, n, size in rows}
    env["generation_s"] = round(time.monotonic() - gen_t0, 2)
    log(f"test images ready in {env['generation_s']:.1f} s")

    results = []
    runs_dir = work / "runs"
    runs_dir.mkdir(exist_ok=True)
    for kind, n, size in rows:
        wf_file, _, wf_desc = WORKFLOWS[kind]
        for name, path in binaries:
            tag = f"{kind}-{n}-{size[0]}x{size[1]}-{name}"
            run_dir = runs_dir / tag
            if run_dir.exists():
                shutil.rmtree(run_dir)
            out_dir, cache_dir = run_dir / "out", run_dir / "cache"
            out_dir.mkdir(parents=True)
            cache_dir.mkdir()
            argv = [path, "run", str(repo / wf_file),
                    "--set", f"input={folders[(size, n)]}",
                    "--set", f"output={out_dir}/{{stem}}.png",
                    "--cache-dir", str(cache_dir), "--quiet"]
            if kind == "img2img":
                argv += ["--set", f"checkpoint={model}"]
            if args.threads:
                argv += ["--threads", str(args.threads)]
            argv += args.extra
            log(f"run {tag} ...")
            code, wall, rss_kib, timed_out, usage = run_child(
                argv, run_dir / "stdout.txt", run_dir / "stderr.txt", args.timeout)
            outputs = sum(1 for f in os.listdir(out_dir) if f.lower().endswith(".png"))
            cache_bytes = tree_size(cache_dir)
            errors = []
            if timed_out:
                errors.append(f"timed out after {args.timeout:g} s")
            if code != 0:
                errors.append(f"exit status {code}" if code > 0 else f"killed by signal {-code}")
            if outputs != n:
                errors.append(f"{outputs} outputs, expected {n}")
            res = {
                "row": f"{kind}:{n}", "workflow": wf_desc, "items": n,
                "size": f"{size[0]}x{size[1]}", "binary": name, "ok": not errors,
                "error": "; ".join(errors) or None, "exit_status": code,
                "wall_s": round(wall, 3), "items_per_s": round(n / wall, 3) if wall > 0 else None,
                "peak_rss_mb": round(rss_kib / 1024, 1),
                "user_s": round(usage.ru_utime, 2), "sys_s": round(usage.ru_stime, 2),
                "outputs": outputs, "cache_mb": round(cache_bytes / 2**20, 1),
                "argv": argv,
            }
            if errors:
                res["stderr_tail"] = tail(run_dir / "stderr.txt")
                log(f"  FAILED: {res['error']}")
                if res["stderr_tail"]:
                    print(res["stderr_tail"], file=sys.stderr)
            else:
                log(f"  {wall:.1f} s, {n / wall:.2f} items/s, peak RSS {rss_kib / 1024:.0f} MB, "
                    f"cache {cache_bytes / 2**20:.0f} MB")
            results.append(res)
            if not args.keep_outputs:
                shutil.rmtree(run_dir, ignore_errors=True)

    # Ratios: peak RSS against the same binary's smallest row of the same workflow and size,
    # and (several binaries) against the first binary on the same row.
    first = binaries[0][0]
    for r in results:
        same = [o for o in results if o["workflow"] == r["workflow"] and o["size"] == r["size"]
                and o["binary"] == r["binary"] and o["ok"]]
        if r["ok"] and same:
            ref = min(same, key=lambda o: o["items"])
            r["rss_vs_smallest"] = round(r["peak_rss_mb"] / ref["peak_rss_mb"], 3)
            r["smallest_items"] = ref["items"]
        if len(binaries) > 1:
            base = [o for o in results if o["row"] == r["row"] and o["size"] == r["size"]
                    and o["binary"] == first and o["ok"]]
            if r["ok"] and base:
                r["rss_vs_" + first] = round(r["peak_rss_mb"] / base[0]["peak_rss_mb"], 3)
                r["wall_vs_" + first] = round(r["wall_s"] / base[0]["wall_s"], 3)

    cols = ["row", "items", "binary", "wall s", "items/s", "peak RSS MB", "RSS vs smallest"]
    if len(binaries) > 1:
        cols += [f"RSS vs {first}", f"wall vs {first}"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        row_label = f"{r['workflow']} {r['size']}"
        if not r["ok"]:
            cells = [row_label, str(r["items"]), r["binary"],
                     f"{r['wall_s']:.1f}", "-", f"{r['peak_rss_mb']:.0f}",
                     f"**FAILED: {r['error']}**"]
            cells += ["-", "-"] if len(binaries) > 1 else []
        else:
            ratio = (f"x{r['rss_vs_smallest']:.2f} of {r['smallest_items']}-image run"
                     if r["smallest_items"] != r["items"] else "x1.00 (smallest)")
            cells = [row_label, str(r["items"]), r["binary"], f"{r['wall_s']:.1f}",
                     f"{r['items_per_s']:.2f}", f"{r['peak_rss_mb']:.0f}", ratio]
            if len(binaries) > 1:
                k = "rss_vs_" + first
                cells += ([f"x{r[k]:.2f}", f"x{r['wall_vs_' + first]:.2f}"] if k in r
                          else ["-", "-"])
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))
    print(f"\ntest image generation: {env['generation_s']:.1f} s; "
          f"peak RSS = ru_maxrss of the sdflow process (MB = 2^20 bytes)")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": results}, f, indent=2)
            f.write("\n")
        log(f"wrote {args.json}")

    if temp_work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
