#!/usr/bin/env python3
"""PyAV and decord on the exact frame plan of `rho data bench --plan-out plan.json`.

PyAV is used the way pytorchvideo/PySlowFast use it: for each clip (in time order) seek to the
clip's first frame and decode forward to its last, converting the wanted frames to RGB at the
planned size. decord: VideoReader(width, height, num_threads=1).get_batch(frames). Both run with
one decoding thread; CPU time is process time.

Usage: scripts/bench_data.py plan.json [--frames-per-clip 8] [--json]
Needs av and decord (pip).
"""
import argparse
import json
import time


def pyav_video(item, t):
    import av

    frames = item["frames"]
    clips = [sorted(frames[i:i + t]) for i in range(0, len(frames), t)]
    with av.open(item["path"]) as c:
        s = c.streams.video[0]
        s.thread_type = "NONE"
        s.codec_context.thread_count = 1
        fps = float(s.average_rate)
        tb = float(s.time_base)
        start = s.start_time or 0
        out = 0
        for clip in sorted(clips):
            wanted = set(clip)
            c.seek(int(start + clip[0] / fps / tb), backward=True, any_frame=False, stream=s)
            for f in c.decode(s):
                idx = round((f.pts - start) * tb * fps)
                if idx in wanted:
                    f.to_ndarray(format="rgb24", width=item["width"], height=item["height"])
                    out += 1
                if idx >= clip[-1]:
                    break
        return out


def decord_video(item):
    import decord

    vr = decord.VideoReader(item["path"], width=item["width"], height=item["height"], num_threads=1)
    return vr.get_batch(item["frames"]).shape[0]


def bench(name, fn, plan):
    c0, w0 = time.process_time(), time.perf_counter()
    for item in plan:
        fn(item)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {"engine": name, "videos": len(plan), "cpu_s": cpu, "wall_s": wall, "ms_per_video_cpu": cpu * 1e3 / len(plan)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("plan")
    ap.add_argument("--frames-per-clip", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rho-json", help="rho's `data bench --json` line, to print the ratios")
    args = ap.parse_args()
    plan = json.load(open(args.plan))
    results = [bench("pyav", lambda it: pyav_video(it, args.frames_per_clip), plan)]
    try:
        import decord  # noqa: F401

        results.append(bench("decord", decord_video, plan))
    except ImportError:
        print("decord is not installed; skipped")
    rho = json.loads(args.rho_json) if args.rho_json else None
    if rho:
        print(f'rho: {rho["videos"]} videos, {rho["cpu_s"]:.2f} CPU-s, {rho["ms_per_video_cpu"]:.1f} CPU-ms per video (wall {rho["seconds"]:.2f} s)')
    for r in results:
        line = json.dumps(r) if args.json else f'{r["engine"]}: {r["videos"]} videos, {r["cpu_s"]:.2f} CPU-s, {r["ms_per_video_cpu"]:.1f} CPU-ms per video (wall {r["wall_s"]:.2f} s)'
        if rho and not args.json:
            line += f'; rho is {r["ms_per_video_cpu"] / rho["ms_per_video_cpu"]:.2f}x faster per CPU-second'
        print(line)


if __name__ == "__main__":
    main()
