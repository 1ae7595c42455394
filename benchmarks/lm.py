"""Tokens per second and model FLOPs utilization (MFU) of gamesim's transformer policy.

For each named model config (`gamesim.lm.transformer.CONFIGS`), in float32 on jax.devices()[0]:

sample: `transformer.sample` of `batch` responses (contexts 0, temperature 1), tokens = batch * L
per call. train: one jitted optax Adam step (lr 3e-3) on the mean negative `transformer.log_prob`
of `batch` fixed responses, tokens = batch * L per step; the loop feeds each step's parameters and
optimizer state to the next. Both are timed after a warm-up call with the same shapes (JAX compiles
once per shape): 3 windows of ~0.7 s (0.1 s --quick) of back-to-back calls, the per-call time of the
fastest window. "compile s" is sample / train: the warm-up call minus one steady call.

FLOPs (multiply-add = 2), for the model's input length T = L (the prompt and y_1..y_{L-1}):
  forward per token  F = 2 N + 2 n_layers T d_model,  N = n_layers (4 d^2 + 2 d d_mlp) + d V
N is the matmul weights (q, k, v, o, MLP in/out, unembedding; the embeddings are gathers, the
biases and LayerNorms are left out); 2 n_layers T d_model is the causal half of q k^T and of the
attention-weighted values (the model computes the full T x T scores and masks them).
  train per token    3 F  (forward + backward); the Adam update is left out.
  sample per token   L F  `sample` has no KV cache: each of its L steps reruns the forward pass on
                     the whole (batch, L) buffer, so a call does L * batch * L * F. These are the
                     FLOPs it executes; a cached decoder would need ~F per token, L times fewer.
MFU = FLOPs per token * tokens/s / peak. The peak is measured in the same run, before the first
config and again after each: a jitted float32 n x n @ n x n matmul chained in one `fori_loop`
(n = 2048 on CPU, 8192 on GPU/TPU), at the backend's default matmul precision, the one the model's
matmuls run at too (TF32 on recent NVIDIA GPUs, bfloat16 on TPU); the fastest measurement is the denominator, and all
are printed. (A shared cloud VM's speed can drift by 2x within minutes: measuring the peak only
once, at the start, let one run report 150% MFU.)

    python benchmarks/lm.py [--configs tiny,small] [--batch B] [--quick] [--json PATH]

--quick is a smoke test (tiny only, batch 128, ~8 s on 2 cores). medium has its own default
batch (128): its sampling costs L * F = 12 x 9.5 MFLOP per token.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np

import common

BATCH = {"tiny": 1024, "small": 1024, "medium": 128}
QUICK_BATCH = 128
LR = 3e-3


def timed(call, target, windows=3):
    """(seconds of one steady call, compile seconds): a warm-up call, then `windows` windows of
    calls, each lasting target / windows seconds; the per-call time of the fastest window."""
    t0 = time.perf_counter()
    call().block_until_ready()
    first = time.perf_counter() - t0
    per_call = math.inf
    for _ in range(windows):
        calls, previous, t0 = 0, None, time.perf_counter()
        while True:  # at most two calls in flight: block on the one before
            out = call()
            calls += 1
            if previous is not None:
                previous.block_until_ready()
            previous = out
            if time.perf_counter() - t0 >= target / windows:
                out.block_until_ready()
                per_call = min(per_call, (time.perf_counter() - t0) / calls)
                break
    return per_call, max(first - per_call, 0.0)


def peak_meter(jax, jnp, n, reps):
    """A function target -> measured float32 matmul FLOP/s: `reps` chained n x n matmuls in one
    jitted fori_loop (compiled here), the fastest of at least 3 timings within `target` seconds."""
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32) / math.sqrt(n)  # keeps |x| ~ 1 along the chain
    chain = jax.jit(lambda x, b: jax.lax.fori_loop(0, reps, lambda _, x: x @ b, x))
    chain(a, b).block_until_ready()

    def measure(target):
        best, t_end = math.inf, time.perf_counter() + target
        while True:
            for _ in range(3):
                t0 = time.perf_counter()
                chain(a, b).block_until_ready()
                best = min(best, time.perf_counter() - t0)
            if time.perf_counter() >= t_end:
                return 2 * n ** 3 * reps / best

    return measure


def measure(name, cfg, batch, target):
    import jax
    import jax.numpy as jnp
    import optax

    from gamesim.lm import transformer

    key = jax.random.PRNGKey(0)
    params = transformer.init(key, cfg)
    n_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
    contexts = jnp.zeros((batch,), jnp.int32)
    tokens = batch * cfg.length
    N, F = cfg.flops_per_token()

    counter = iter(range(1 << 30))
    sample_s, sample_compile = timed(
        lambda: transformer.sample(params, cfg, jax.random.fold_in(key, next(counter)), contexts), target)

    seqs = transformer.sample(params, cfg, jax.random.PRNGKey(1), contexts)
    optimizer = optax.adam(LR)

    @jax.jit
    def train_step(params, opt_state, contexts, seqs):
        grad = jax.grad(lambda p: -transformer.log_prob(p, cfg, contexts, seqs).mean())(params)
        updates, opt_state = optimizer.update(grad, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    state = [params, optimizer.init(params)]

    def train_call():
        state[:] = train_step(*state, contexts, seqs)
        return state[0]["unembed"]

    train_s, train_compile = timed(train_call, target)
    sample_tps, train_tps = tokens / sample_s, tokens / train_s
    return {"config": name, "params": int(n_params), "matmul_params": N, "fwd_flops_per_token": F,
            "batch": batch, "length": cfg.length, "sample_tok_per_s": sample_tps, "train_tok_per_s": train_tps,
            "sample_flops_per_token": cfg.length * F, "train_flops_per_token": 3 * F,
            "sample_compile_s": sample_compile, "train_compile_s": train_compile,
            "sample_call_s": sample_s, "train_step_s": train_s}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=None, help="comma-separated names among tiny, small, medium "
                        "(default tiny,small; tiny with --quick)")
    parser.add_argument("--batch", type=int, default=None,
                        help=f"sequences per call for every config (default {BATCH}, {QUICK_BATCH} with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny only, small batch, short timings (~8 s)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    from gamesim.lm.transformer import CONFIGS

    names = (args.configs or ("tiny" if args.quick else "tiny,small")).split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; choose among {', '.join(CONFIGS)}")
    if args.batch is not None and args.batch < 1:
        parser.error("--batch must be ≥ 1")
    target = 0.3 if args.quick else 2.0

    device = jax.devices()[0]
    machine = {"device": str(device), "platform": device.platform, "device_kind": device.device_kind,
               "cpu": common.cpu_model(), "cores": os.cpu_count(), "jax": jax.__version__,
               "numpy": np.__version__, "dtype": "float32", "quick": args.quick}
    print(f"{device.platform}: {device.device_kind} ({device}) | {machine['cpu']}, {machine['cores']} cores | "
          f"jax {machine['jax']} | float32{' | --quick' if args.quick else ''}", flush=True)

    n = 2048 if device.platform == "cpu" else 8192
    reps = 2 if device.platform == "cpu" else 20
    meter = peak_meter(jax, jnp, n, reps)
    peaks, rows = [meter(target)], []
    for name in names:  # the peak again after each config: the max over the run is the denominator
        batch = args.batch or (QUICK_BATCH if args.quick else BATCH[name])
        print(f"measuring {name} (batch {batch})", file=sys.stderr, flush=True)
        rows.append(measure(name, CONFIGS[name], batch, target))
        peaks.append(meter(target / 2))
    peak = max(peaks)
    machine.update(peak_flops=peak, peak_flops_measured=peaks, peak_matmul=f"{n}x{n} @ {n}x{n} x {reps}")
    print(f"peak: {peak / 1e9:.1f} GFLOP/s, the best of {len(peaks)} measurements in this run "
          f"({', '.join(f'{p / 1e9:.0f}' for p in peaks)}: before the first config and after each), "
          f"float32 {n}x{n} @ {n}x{n} matmuls")
    print("FLOPs/token: train 3F, sample L*F (no KV cache: L forward passes over the (batch, L) buffer); "
          "F = 2*matmul params + 2*n_layers*L*d_model")
    header = (f"{'config':>6} | {'params':>9} | {'F MFLOP':>7} | {'batch':>5} | {'sample tok/s':>12} | "
              f"{'train tok/s':>11} | {'sample MFU':>10} | {'train MFU':>9} | {'compile s':>11}")
    print(header + "\n" + "-" * len(header))
    for r in rows:
        r["sample_mfu"] = r["sample_flops_per_token"] * r["sample_tok_per_s"] / peak
        r["train_mfu"] = r["train_flops_per_token"] * r["train_tok_per_s"] / peak
        print(f"{r['config']:>6} | {r['params']:>9,} | {r['fwd_flops_per_token'] / 1e6:>7.3f} | {r['batch']:>5} | "
              f"{r['sample_tok_per_s']:>12,.0f} | {r['train_tok_per_s']:>11,.0f} | {r['sample_mfu']:>10.1%} | "
              f"{r['train_mfu']:>9.1%} | {r['sample_compile_s']:>4.1f} / {r['train_compile_s']:>4.1f}")
    print("compile s: sample / train (the warm-up call minus a steady one); tok/s: the fastest of 3 timing windows")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
