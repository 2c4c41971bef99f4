"""PyTorch twin of examples/toy/toy-seg-net.ts, timed for `npm run bench -- backend`.

Same layers, shapes and step (forward in training mode, class-weighted cross-entropy, backward, Adam), so
the ratio tfjs/PyTorch compares runtimes, not models. Uses Debian's python3-torch (`apt-get install
python3-torch`, then run with /usr/bin/python3); it is a benchmark reference only, never a dependency.

  /usr/bin/python3 bench/reference/toy_seg_net.py --batch 4 --size 128 --width 32 --threads 1
prints one JSON line: {"ms_per_step": ..., "threads": ..., "torch": ...}.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class ToySegNet(nn.Module):
    def __init__(self, num_classes: int, width: int):
        super().__init__()
        w = width
        self.stem = nn.Conv2d(3, w, 3, stride=2, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(w, momentum=0.1, eps=1e-5)
        self.dw = nn.Conv2d(w, w, 3, padding=1, groups=w, bias=False)
        self.dw_bn = nn.BatchNorm2d(w)
        self.pw = nn.Conv2d(w, 2 * w, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(2 * w)
        self.down = nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1, bias=False)
        self.down_bn = nn.BatchNorm2d(2 * w)
        self.atrous = nn.Conv2d(2 * w, 2 * w, 3, padding=2, dilation=2, bias=False)
        self.point = nn.Conv2d(2 * w, 2 * w, 1, bias=False)
        self.aspp_bn = nn.BatchNorm2d(2 * w)
        self.cls = nn.Conv2d(2 * w, num_classes, 1, bias=True)

    def forward(self, x):
        h, w = x.shape[-2:]
        x = F.relu(self.stem_bn(self.stem(x)))
        x = F.relu(self.dw_bn(self.dw(x)))
        x = F.relu(self.pw_bn(self.pw(x)))
        x = F.relu(self.down_bn(self.down(x)))
        x = F.relu(self.aspp_bn(self.atrous(x) + self.point(x)))
        return F.interpolate(self.cls(x), size=(h, w), mode="bilinear", align_corners=False)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = ToySegNet(a.classes, a.width).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(a.batch, 3, a.size, a.size)
    y = torch.randint(0, a.classes, (a.batch, a.size, a.size))
    cw = torch.ones(a.classes)
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y, weight=cw, ignore_index=255)
        loss.backward()
        opt.step()
        float(loss)
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1000)
    print(json.dumps({"ms_per_step": statistics.median(times), "threads": torch.get_num_threads(),
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
