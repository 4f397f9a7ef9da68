"""Runs `sdflow bench model` and bench_torch.py on the same model with the same thread count
and prints seconds, GFLOP/s and the ratio sdflow/PyTorch per row (a markdown table).

    python bench_compare.py MODEL_FOLDER [--threads 2] [--repeats 1] [--fast] [--only ROWS] [--isa avx2] [--sdflow .build/release/sdflow]

--isa caps the instruction set on both sides, to measure a CPU class this machine is above: sdflow's
dispatch and tuner through SDFLOW_ISA (and OpenBLAS's kernels through OPENBLAS_CORETYPE), PyTorch's through ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA and
MKL_ENABLE_INSTRUCTIONS (the values below).
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The environment each side gets for an ISA cap.
ISA_CAPS = {
    # OpenBLAS picks its own kernels: OPENBLAS_CORETYPE caps them too (Haswell: AVX2 + FMA).
    "avx2": ({"SDFLOW_ISA": "avx2", "OPENBLAS_CORETYPE": "Haswell"},
             {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}),
    "avx512": ({"SDFLOW_ISA": "avx512"},
               {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_ENABLE_INSTRUCTIONS": "AVX512"}),
    "avx512bf16": ({"SDFLOW_ISA": "avx512bf16"},
                   {"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16", "MKL_ENABLE_INSTRUCTIONS": "AVX512"}),
}
REPO = os.path.dirname(os.path.dirname(HERE))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fast", action="store_true", help="also run sdflow's fast mode")
    parser.add_argument("--only")
    parser.add_argument("--repeats", type=int, default=1, help="repetitions per row (the best is reported)")
    parser.add_argument("--sdflow", default=os.path.join(REPO, ".build", "release", "sdflow"))
    parser.add_argument("--isa", choices=sorted(ISA_CAPS), help="cap the instruction set on both sides")
    args = parser.parse_args()
    ours, theirs = ISA_CAPS[args.isa] if args.isa else ({}, {})
    only = (["--only", args.only] if args.only else []) + ["--repeats", str(args.repeats)]
    runs = {"sdflow": [args.sdflow, "bench", "model", args.model, "--threads", str(args.threads), "--json"] + only}
    if args.fast:
        runs["sdflow --fast"] = runs["sdflow"] + ["--fast"]
    runs["pytorch"] = [sys.executable, os.path.join(HERE, "bench_torch.py"), args.model, "--threads", str(args.threads)] + only
    results = {}
    for name, command in runs.items():
        print(f"running {name} ...", file=sys.stderr, flush=True)
        env = dict(os.environ, **(theirs if name == "pytorch" else ours))
        out = subprocess.run(command, check=True, capture_output=True, text=True, cwd=HERE, env=env).stdout
        results[name] = json.loads(out[out.index("{"):])
    torch_rows = {r["name"]: r["seconds"] for r in results["pytorch"]["rows"]}
    header = "| row | PyTorch s | " + " | ".join(f"{n} s | {n} GFLOP/s | {n}/PyTorch" for n in runs if n != "pytorch") + " |"
    if args.isa:
        print(f"instruction set capped at {args.isa} on both sides")
    print(header)
    print("|" + "---|" * (2 + 3 * (len(runs) - 1)))
    for row in results["sdflow"]["rows"]:
        name = row["name"]
        cells = [name, f"{torch_rows.get(name, float('nan')):.2f}"]
        for run in runs:
            if run == "pytorch":
                continue
            r = next(x for x in results[run]["rows"] if x["name"] == name)
            ratio = r["seconds"] / torch_rows[name] if name in torch_rows and torch_rows[name] > 0 else float("nan")
            cells += [f"{r['seconds']:.2f}", f"{r['gflops']:.0f}" if r["gflop"] else "-", f"{ratio:.2f}"]
        print("| " + " | ".join(cells) + " |")
    for run in runs:
        if run != "pytorch" and results[run].get("peak_rss_bytes"):
            print(f"\n{run}: peak resident memory after txt2img512 {results[run]['peak_rss_bytes'] / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
