"""Peak memory of the change-map mode vs plain img2img at the same size.

    python -m benchmarks.change_map_memory [--profile toy] [--sizes 32 256 512] [--steps 50]

Modes (same latents, prompt, steps and CFG):
  img2img         diffusers-style: noise E(x) once to the start level, denoise (no map)
  img2img+map     the same with a gradient change map (1 = change fully): every noised
                  level kept for re-injection (ops.sdedit.img2img)
  differential    Differential Diffusion over the whole schedule (ops.differential_diffusion)
Measure: on CUDA `torch.cuda.max_memory_allocated` (weights included); on CPU the peak of
live tensor bytes allocated during the run, from the torch profiler's memory events
("Total Allocated"), plus the weights' bytes for the total. Tensor bytes, not RSS: RSS is
dominated by the torch libraries and moves by megabytes with allocator noise.
The toy UNet is fully convolutional, so sizes above 32 px measure the same code at scale.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from benchmarks.common import set_threads

MODES = ("img2img", "img2img+map", "differential")


def model_mib(pipe) -> float:
    modules = (pipe.unet, pipe.vae, pipe.text_encoder)
    return sum(t.numel() * t.element_size() for m in modules for t in [*m.parameters(), *m.buffers()]) / 2**20


def peak_cpu_tensor_mib(fn) -> float:
    """Peak live tensor bytes allocated while `fn` runs (torch profiler memory events)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events
              if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0]
    return max(totals, default=0) / 2**20


def measure(pipe, mode: str, size: int, steps: int) -> dict:
    from ops.ddim import Schedule, ddim_sample
    from ops.differential_diffusion import DDConfig, differential_diffusion_latents
    from ops.sdedit import SDEditConfig, img2img, start_level
    from ops.text import encode_prompt

    device = pipe.unet.device
    latent = size // pipe.vae_scale_factor
    g = torch.Generator().manual_seed(0)
    z0 = torch.randn(1, pipe.unet.config.in_channels, latent, latent, generator=g).to(device, pipe.unet.dtype)
    cond, uncond = encode_prompt(pipe, "a large red circle on a white background"), encode_prompt(pipe, "")
    change_map = (torch.arange(size, dtype=torch.float32) / size).expand(size, size)
    config = SDEditConfig(strength=0.75, num_steps=steps)

    def plain():
        schedule = Schedule(pipe.scheduler, steps)
        start = start_level(steps, config.strength)
        noise = torch.randn(z0.shape, generator=g).to(device, z0.dtype)
        z = pipe.scheduler.add_noise(z0, noise, schedule.timesteps[start].reshape(1))
        return ddim_sample(pipe.unet, z, start, cond, schedule, uncond, config.guidance_scale)

    run = {"img2img": plain,
           "img2img+map": lambda: img2img(pipe, z0, cond, uncond, config, g, change_map),
           "differential": lambda: differential_diffusion_latents(pipe, z0, change_map, cond, uncond,
                                                                  DDConfig(steps), g)}[mode]
    with torch.no_grad():
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            run()
            torch.cuda.synchronize()
            peak, measure_name = torch.cuda.max_memory_allocated() / 2**20, "cuda max_memory_allocated"
            working = peak - model_mib(pipe)
        else:
            working = peak_cpu_tensor_mib(run)
            peak, measure_name = working + model_mib(pipe), "cpu tensor bytes (profiler) + weights"
    return {"mode": mode, "size": size, "steps": steps, "device": str(device), "measure": measure_name,
            "peak_mib": round(peak, 3), "working_mib": round(working, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="toy")
    parser.add_argument("--diffusion", help="override the profile's diffusion pipeline folder")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 256, 512])
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    set_threads()

    from models.loaders import load_pipeline
    from models.profiles import get_profile

    profile = get_profile(args.profile)
    if args.diffusion:
        profile = replace(profile, diffusion=args.diffusion)
    pipe = load_pipeline(profile)
    rows = [measure(pipe, mode, size, args.steps) for size in args.sizes for mode in MODES]
    print(f"{'size':>5} {'mode':<13} {'peak MiB':>10} {'working MiB':>12} {'peak ratio':>11} {'working ratio':>14}")
    for row in rows:
        ref = next(r for r in rows if r["size"] == row["size"] and r["mode"] == "img2img")
        row["peak_ratio"] = round(row["peak_mib"] / ref["peak_mib"], 4)
        row["working_ratio"] = round(row["working_mib"] / ref["working_mib"], 4)
        print(f"{row['size']:>5} {row['mode']:<13} {row['peak_mib']:>10.2f} {row['working_mib']:>12.2f} "
              f"{row['peak_ratio']:>11.4f} {row['working_ratio']:>14.4f}")
    print(json.dumps({"profile": profile.name, "diffusion": profile.diffusion, "measure": rows[0]["measure"],
                      "rows": rows}))


if __name__ == "__main__":
    main()
