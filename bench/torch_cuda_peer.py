#!/usr/bin/env python3
"""PyTorch's CUDA peer of distill_bench_cuda: the same losses, as a PyTorch user writes them
(the formulas of distill_bench.cpp's LibTorch peers), forward + backward through autograd on the
GPU, float32, at the bench's shapes.

Timed like distill_bench_cuda: CUDA events around one call, median of 20 calls after 3 warm-up
calls; the student's .grad is reset to None before each call (autograd writes a fresh gradient).
Optional peer only: distill never depends on PyTorch. Usage:
    python3 bench/torch_cuda_peer.py [--json FILE]
"""
import json
import math
import sys

import torch
import torch.nn.functional as F

SHAPES = [(256, 100), (128, 1000), (4096, 32000), (1024, 128256)]
WARM_UP, TIMED, TOP_K = 3, 20, 64


def kd(s, t, tau=2.0):
    ls, lt = F.log_softmax(s / tau, 1), F.log_softmax(t / tau, 1)
    return F.kl_div(ls, lt, reduction="batchmean", log_target=True) * tau * tau


def reverse_kd(s, t, tau=2.0):
    ls, lt = F.log_softmax(s / tau, 1), F.log_softmax(t / tau, 1)
    return (ls.exp() * (ls - lt)).sum() / s.shape[0] * tau * tau


def jsd(s, t, tau=2.0, beta=0.5):
    ls, lt = F.log_softmax(s / tau, 1), F.log_softmax(t / tau, 1)
    lm = torch.logsumexp(torch.stack([ls + math.log(1 - beta), lt + math.log(beta)]), 0)
    kl_t = F.kl_div(lm, lt, reduction="none", log_target=True)
    kl_s = F.kl_div(lm, ls, reduction="none", log_target=True)
    return (beta * kl_t + (1 - beta) * kl_s).sum() / s.shape[0] * tau * tau


def tvd(s, t, tau=2.0):
    ps, pt = F.softmax(s / tau, 1), F.softmax(t / tau, 1)
    return 0.5 * (pt - ps).abs().sum() / s.shape[0] * tau * tau


def dkd(s, t, labels, tau=4.0, alpha=1.0, beta=8.0):
    target = labels.unsqueeze(1)
    gt = torch.zeros_like(t).scatter_(1, target, 1).bool()
    other = torch.ones_like(t).scatter_(1, target, 0).bool()

    def cat_mask(p):
        return torch.cat([(p * gt).sum(1, keepdim=True), (p * other).sum(1, keepdim=True)], 1)

    ps, pt = cat_mask(F.softmax(s / tau, 1)), cat_mask(F.softmax(t / tau, 1))
    n = s.shape[0]
    tckd = F.kl_div(torch.log(ps), pt, reduction="sum") * tau * tau / n
    pt2 = F.softmax(t / tau - 1000.0 * gt, 1)
    ls2 = F.log_softmax(s / tau - 1000.0 * gt, 1)
    nckd = F.kl_div(ls2, pt2, reduction="sum") * tau * tau / n
    return alpha * tckd + beta * nckd


def kd_topk(s, top_index, top_logprob):
    lq = F.log_softmax(s, 1).gather(1, top_index)
    return (top_logprob.exp() * (top_logprob - lq)).sum() / s.shape[0]


def median_ms(f):
    for _ in range(WARM_UP):
        f()
    torch.cuda.synchronize()
    times = []
    for _ in range(TIMED):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        f()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    times.sort()
    return times[len(times) // 2]


def main():
    json_path = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(0)
    print(torch.cuda.get_device_name(0), "torch", torch.__version__)
    records = []
    for rows, cols in SHAPES:
        student = (torch.randn(rows, cols, device=dev, generator=gen) * 3).requires_grad_(True)
        teacher = torch.randn(rows, cols, device=dev, generator=gen) * 3
        labels = torch.randint(0, cols, (rows,), device=dev, generator=gen)
        k = min(TOP_K, cols)
        top_index = torch.rand(rows, cols, device=dev, generator=gen).topk(k, 1).indices
        top_logprob = F.log_softmax(torch.randn(rows, k, device=dev, generator=gen), 1)
        cases = {
            "kd": lambda: kd(student, teacher),
            "reverse_kd": lambda: reverse_kd(student, teacher),
            "jsd": lambda: jsd(student, teacher),
            "tvd": lambda: tvd(student, teacher),
            "dkd": lambda: dkd(student, teacher, labels),
            "kd_topk": lambda: kd_topk(student, top_index, top_logprob),
        }
        print(f"\n{rows} x {cols} float32")
        for name, loss in cases.items():
            def call():
                student.grad = None
                loss().backward()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            ms = median_ms(call)
            extra = torch.cuda.max_memory_allocated() - base
            print(f"  {name:<12} {ms:9.3f} ms   peak extra device memory {extra / 2**20:9.1f} MiB")
            records.append({"method": name, "shape": f"{rows}x{cols}", "backend": "torch_cuda",
                            "median_ms": ms, "extra_device_bytes": extra})
        del student, teacher
        torch.cuda.empty_cache()
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"context": {"device": torch.cuda.get_device_name(0), "torch": torch.__version__},
                       "records": records}, f, indent=1)


if __name__ == "__main__":
    main()
