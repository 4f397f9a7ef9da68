#!/usr/bin/env python3
"""Times prompts on a running `sdflow serve` (or ComfyUI) from a client's side, stdlib only.

    sdflow serve --models M --output /tmp/out &      # M/checkpoints/NAME is the model
    python3 tools/bench_server.py --checkpoint NAME [--url http://127.0.0.1:8188] [--repeats 5]

Posts ComfyUI's default graph (Tests/Fixtures/comfy/txt2img_api.json): a first prompt, prompts
with new seeds, and the same prompt again, each waited for before the next. Prints, per prompt,
the time from POST to its history entry (polled every millisecond) and the server's own time
from `execution_start` to `execution_success` (the history's status messages).
"""
import argparse
import json
import os
import statistics
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
GRAPH = os.path.join(HERE, "..", "Tests", "Fixtures", "comfy", "txt2img_api.json")


def request(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as response:
        return json.loads(response.read())


def run(url, graph):
    start = time.perf_counter()
    prompt_id = request(url + "/prompt", {"prompt": graph, "client_id": "bench"})["prompt_id"]
    while True:
        entry = request(f"{url}/history/{prompt_id}").get(prompt_id)
        if entry:
            break
        time.sleep(0.001)
    wall = time.perf_counter() - start
    stamps = {name: data.get("timestamp") for name, data in entry["status"].get("messages", [])}
    server = None
    if stamps.get("execution_start") and stamps.get("execution_success"):
        server = (stamps["execution_success"] - stamps["execution_start"]) / 1000
    if entry["status"]["status_str"] != "success":
        raise SystemExit(f"prompt failed: {json.dumps(entry['status'])}")
    return wall, server


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8188")
    parser.add_argument("--checkpoint", required=True, help="ckpt_name: a file or folder in the server's checkpoints/")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with open(GRAPH) as f:
        graph = json.load(f)
    graph["4"]["inputs"]["ckpt_name"] = args.checkpoint
    graph["3"]["inputs"]["steps"] = args.steps
    graph["5"]["inputs"]["width"] = graph["5"]["inputs"]["height"] = args.size
    seed = int(time.time())

    def with_seed(s):
        g = json.loads(json.dumps(graph))
        g["3"]["inputs"]["seed"] = s
        return g

    def show(label, timings):
        walls = [w * 1000 for w, _ in timings]
        servers = [s * 1000 for _, s in timings if s is not None]
        line = f"{label:<16} POST to history {min(walls):7.1f}-{max(walls):7.1f} ms (median {statistics.median(walls):.1f})"
        if servers:
            line += f"; server start to success {min(servers):.1f}-{max(servers):.1f} ms"
        print(line)
        return statistics.median(walls)

    first = show("first prompt", [run(args.url, with_seed(seed))])
    new = show("new seed", [run(args.url, with_seed(seed + 1 + i)) for i in range(args.repeats)])
    same = show("same prompt", [run(args.url, with_seed(seed)) for _ in range(args.repeats)])
    print(f"same prompt: {100 * same / first:.1f}% of the first, {100 * same / new:.1f}% of a new seed")


if __name__ == "__main__":
    main()
