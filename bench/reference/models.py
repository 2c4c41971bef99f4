"""PyTorch twins of @ir2f/backbones' presets, for `npm run bench -- models` and the PyTorch parity test.

Written from the papers' reference code (torchvision ResNet, mmseg DLV2Head, NVlabs mix_transformer.py,
SegFormerHead, DAFormerHead) with the same module names, so a state saved by ir2f (safetensors, PyTorch
layouts) loads with load_state_dict. Uses Debian's python3-torch (/usr/bin/python3); never a dependency.

  /usr/bin/python3 bench/reference/models.py time --preset mit-b0-segformer --size 256 --threads 2
  /usr/bin/python3 bench/reference/models.py run --preset mit-tiny-daformer --weights w.safetensors \
      --input x.f32 --shape 2,3,64,64 --out y.f32
"""
import argparse
import json
import math
import statistics
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- ResNet + DeepLabV2
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = self.downsample(x) if self.downsample is not None else x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = self.downsample(x) if self.downsample is not None else x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block, layers, width=64, output_stride=8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        dilate = [False, False, output_stride <= 8, output_stride <= 16]
        inplanes, dilation = width, 1
        for s in range(4):
            planes = width * 2 ** s
            stride = 1 if s == 0 else 2
            previous = dilation
            if dilate[s]:
                dilation *= stride
                stride = 1
            down = None
            if stride != 1 or inplanes != planes * block.expansion:
                down = nn.Sequential(nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
                                     nn.BatchNorm2d(planes * block.expansion))
            blocks = [block(inplanes, planes, stride, previous, down)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes, 1, dilation) for _ in range(1, layers[s])]
            setattr(self, f'layer{s + 1}', nn.Sequential(*blocks))
        self.channels = inplanes

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for s in range(4):
            x = getattr(self, f'layer{s + 1}')(x)
            outs.append(x)
        return outs


class DLV2Head(nn.Module):
    def __init__(self, in_channels, num_classes, dilations=(6, 12, 18, 24)):
        super().__init__()
        self.aspp_modules = nn.ModuleList(
            [nn.Conv2d(in_channels, num_classes, 3, padding=d, dilation=d, bias=True) for d in dilations])

    def forward(self, feats):
        return sum(m(feats[-1]) for m in self.aspp_modules)


# ---------------------------------------------------------------- MiT (NVlabs mix_transformer.py)
class OverlapPatchEmbed(nn.Module):
    def __init__(self, patch, stride, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, stride, patch // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        x = self.proj(x)
        _, _, h, w = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class Attention(nn.Module):
    def __init__(self, dim, heads, sr):
        super().__init__()
        self.heads, self.scale, self.sr_ratio = heads, (dim // heads) ** -0.5, sr
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        if sr > 1:
            self.sr = nn.Conv2d(dim, dim, sr, sr)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x, h, w):
        b, n, c = x.shape
        q = self.q(x).reshape(b, n, self.heads, c // self.heads).permute(0, 2, 1, 3)
        if self.sr_ratio > 1:
            x_ = self.sr(x.permute(0, 2, 1).reshape(b, c, h, w)).reshape(b, c, -1).permute(0, 2, 1)
            x_ = self.norm(x_)
        else:
            x_ = x
        kv = self.kv(x_).reshape(b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class DWConv(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x, h, w):
        b, n, c = x.shape
        return self.dwconv(x.transpose(1, 2).view(b, c, h, w)).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x, h, w):
        return self.fc2(self.act(self.dwconv(self.fc1(x), h, w)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, sr):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, sr)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x, h, w):
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x), h, w)


class MixVisionTransformer(nn.Module):
    def __init__(self, dims, heads, depths, srs=(8, 4, 2, 1), mlp_ratio=4):
        super().__init__()
        self.channels = dims
        for s in range(4):
            setattr(self, f'patch_embed{s + 1}', OverlapPatchEmbed(7 if s == 0 else 3, 4 if s == 0 else 2,
                                                                     3 if s == 0 else dims[s - 1], dims[s]))
            setattr(self, f'block{s + 1}', nn.ModuleList([Block(dims[s], heads[s], mlp_ratio, srs[s]) for _ in range(depths[s])]))
            setattr(self, f'norm{s + 1}', nn.LayerNorm(dims[s], eps=1e-6))

    def forward(self, x):
        outs = []
        b = x.shape[0]
        for s in range(4):
            x, h, w = getattr(self, f'patch_embed{s + 1}')(x)
            for blk in getattr(self, f'block{s + 1}'):
                x = blk(x, h, w)
            x = getattr(self, f'norm{s + 1}')(x).reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous()
            outs.append(x)
        return outs


class MLP(nn.Module):
    def __init__(self, in_dim, dim):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)

    def forward(self, x):
        b, _, h, w = x.shape
        return self.proj(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)


class ConvModule(nn.Module):
    def __init__(self, cin, cout, k, padding=0, dilation=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, 1, padding, dilation, groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class SepConvModule(nn.Module):
    def __init__(self, cin, cout, dilation):
        super().__init__()
        self.depthwise_conv = ConvModule(cin, cin, 3, dilation, dilation, groups=cin)
        self.pointwise_conv = ConvModule(cin, cout, 1)

    def forward(self, x):
        return self.pointwise_conv(self.depthwise_conv(x))


def up(x, like):
    return F.interpolate(x, size=like.shape[2:], mode='bilinear', align_corners=False)


class SegFormerHead(nn.Module):
    def __init__(self, in_channels, num_classes, dim):
        super().__init__()
        for i, c in enumerate(in_channels):
            setattr(self, f'linear_c{i + 1}', MLP(c, dim))
        self.linear_fuse = ConvModule(4 * dim, dim, 1)
        self.linear_pred = nn.Conv2d(dim, num_classes, 1)

    def forward(self, feats):
        e = [getattr(self, f'linear_c{i + 1}')(f) for i, f in enumerate(feats)]
        return self.linear_pred(self.linear_fuse(torch.cat([up(e[i], e[0]) for i in (3, 2, 1, 0)], 1)))


class ASPPWrapper(nn.Module):
    def __init__(self, cin, ch, dilations):
        super().__init__()
        self.aspp_modules = nn.ModuleList([ConvModule(cin, ch, 1) if d == 1 else SepConvModule(cin, ch, d) for d in dilations])
        self.bottleneck = ConvModule(len(dilations) * ch, ch, 3, 1)

    def forward(self, x):
        return self.bottleneck(torch.cat([m(x) for m in self.aspp_modules], 1))


class DAFormerHead(nn.Module):
    def __init__(self, in_channels, num_classes, dim):
        super().__init__()
        self.embed_layers = nn.ModuleDict({str(i): MLP(c, dim) for i, c in enumerate(in_channels)})
        self.fuse_layer = ASPPWrapper(4 * dim, dim, (1, 6, 12, 18))
        self.conv_seg = nn.Conv2d(dim, num_classes, 1)

    def forward(self, feats):
        e = [self.embed_layers[str(i)](f) for i, f in enumerate(feats)]
        return self.conv_seg(self.fuse_layer(torch.cat([up(x, e[0]) for x in e], 1)))


class Segmentor(nn.Module):
    def __init__(self, backbone, head):
        super().__init__()
        self.backbone, self.decode_head = backbone, head

    def forward(self, x):
        return up(self.decode_head(self.backbone(x)), x)


MIT = {
    'mit-b0': ([32, 64, 160, 256], [1, 2, 5, 8], [2, 2, 2, 2]),
    'mit-b1': ([64, 128, 320, 512], [1, 2, 5, 8], [2, 2, 2, 2]),
    'mit-b2': ([64, 128, 320, 512], [1, 2, 5, 8], [3, 4, 6, 3]),
    'mit-b3': ([64, 128, 320, 512], [1, 2, 5, 8], [3, 4, 18, 3]),
    'mit-b4': ([64, 128, 320, 512], [1, 2, 5, 8], [3, 8, 27, 3]),
    'mit-b5': ([64, 128, 320, 512], [1, 2, 5, 8], [3, 6, 40, 3]),
    'mit-tiny': ([16, 32, 64, 128], [1, 1, 2, 4], [1, 1, 1, 1]),
}
RESNET = {'resnet18': (BasicBlock, [2, 2, 2, 2], 64), 'resnet50': (Bottleneck, [3, 4, 6, 3], 64),
          'resnet101': (Bottleneck, [3, 4, 23, 3], 64), 'resnet-tiny': (BasicBlock, [1, 1, 1, 1], 16)}
HEAD_DIM = {'mit-b0-segformer': 256, 'mit-tiny-daformer': 64, 'mit-tiny-segformer': 64}


def build(preset, num_classes):
    enc, head = preset.rsplit('-', 1)
    if head == 'deeplabv2':
        block, layers, width = RESNET[enc]
        backbone = ResNet(block, layers, width, 8)
        return Segmentor(backbone, DLV2Head(backbone.channels, num_classes))
    backbone = MixVisionTransformer(*MIT[enc])
    dim = HEAD_DIM.get(preset, 256 if head == 'daformer' else 768)
    cls = DAFormerHead if head == 'daformer' else SegFormerHead
    return Segmentor(backbone, cls(backbone.channels, num_classes, dim))


def load_safetensors(path):
    with open(path, 'rb') as f:
        data = f.read()
    n = struct.unpack('<Q', data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        a, b = info['data_offsets']
        assert info['dtype'] == 'F32', f'{name}: {info["dtype"]}'
        out[name] = torch.from_numpy(np.frombuffer(data[8 + n + a:8 + n + b], dtype='<f4').copy()).reshape(info['shape'])
    return out


def time_train_step(student, a):
    """One DAFormer-style iteration (batch B+B): EMA teacher pseudo-labels (tau 0.968, per-batch quality q),
    source CE, ClassMix (half of the source classes), weighted CE on the mixed image, AdamW (head lr x10),
    EMA update. No colour jitter or blur (ir2f's step includes them: a small extra cost on our side)."""
    import copy
    student.train()
    teacher = copy.deepcopy(student).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    head = [p for n, p in student.named_parameters() if 'head' in n]
    rest = [p for n, p in student.named_parameters() if 'head' not in n]
    opt = torch.optim.AdamW([{'params': rest}, {'params': head, 'lr': 6e-4}], lr=6e-5, weight_decay=0.01)
    B, S, K = a.batch, a.size, a.classes
    xs, xt = torch.randn(B, 3, S, S), torch.randn(B, 3, S, S)
    ys = torch.randint(0, K, (B, S, S))
    phases = {'teacher': [], 'student': [], 'optimizer': []}
    totals = []
    for i in range(a.runs + a.warmup):
        t0 = time.perf_counter()
        with torch.no_grad():
            pt = torch.softmax(up(teacher(xt), xt), 1)
            conf, yhat = pt.max(1)
            q = (conf > 0.968).float().mean()
        t1 = time.perf_counter()
        ls = F.cross_entropy(up(student(xs), xs), ys, ignore_index=255)
        masks = []
        for b in range(B):
            classes = torch.unique(ys[b])
            chosen = classes[torch.randperm(len(classes))[:(len(classes) + 1) // 2]]
            masks.append(torch.isin(ys[b], chosen))
        m = torch.stack(masks).float()
        xm = m[:, None] * xs + (1 - m[:, None]) * xt
        ym = torch.where(m.bool(), ys, yhat)
        w = torch.where(m.bool(), torch.ones_like(m), q.expand_as(m))
        lm = (F.cross_entropy(up(student(xm), xm), ym, reduction='none', ignore_index=255) * w).mean()
        (ls + lm).backward()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        alpha = min(1 - 1 / (i + 2), 0.999)
        with torch.no_grad():
            for tp, sp in zip(teacher.parameters(), student.parameters()):
                tp.mul_(alpha).add_(sp, alpha=1 - alpha)
            for tb, sb in zip(teacher.buffers(), student.buffers()):
                if tb.dtype.is_floating_point:
                    tb.mul_(alpha).add_(sb, alpha=1 - alpha)
        t3 = time.perf_counter()
        if i >= a.warmup:
            totals.append((t3 - t0) * 1000)
            for k, (u, v) in {'teacher': (t0, t1), 'student': (t1, t2), 'optimizer': (t2, t3)}.items():
                phases[k].append((v - u) * 1000)
    return {'ms': statistics.median(totals), 'phases': {k: statistics.median(v) for k, v in phases.items()},
            'threads': torch.get_num_threads(), 'torch': torch.__version__}


def main():
    p = argparse.ArgumentParser()
    p.add_argument('mode', choices=['time', 'run', 'train'])
    p.add_argument('--preset', required=True)
    p.add_argument('--classes', type=int, default=19)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--size', type=int, default=256)
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--runs', type=int, default=5)
    p.add_argument('--warmup', type=int, default=1, help='train: iterations run before the timed ones')
    p.add_argument('--weights')
    p.add_argument('--input')
    p.add_argument('--shape')
    p.add_argument('--out')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = build(a.preset, a.classes).eval()
    if a.mode == 'train':
        print(json.dumps(time_train_step(model, a)))
        return
    if a.mode == 'run':
        state = load_safetensors(a.weights)
        result = model.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith('num_batches_tracked')]
        if missing or result.unexpected_keys:
            raise SystemExit(f'state mismatch: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}')
        shape = [int(v) for v in a.shape.split(',')]
        x = torch.from_numpy(np.fromfile(a.input, dtype='<f4').reshape(shape))
        with torch.no_grad():
            model(x).numpy().astype('<f4').tofile(a.out)
        print(json.dumps({'loaded': len(state), 'params': sum(p.numel() for p in model.parameters())}))
        return
    x = torch.randn(a.batch, 3, a.size, a.size)
    times = []
    with torch.no_grad():
        for i in range(a.runs + 1):
            t0 = time.perf_counter()
            model(x)
            if i:
                times.append((time.perf_counter() - t0) * 1000)
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({'ms': statistics.median(times), 'threads': torch.get_num_threads(), 'params': params,
                      'torch': torch.__version__}))


if __name__ == '__main__':
    main()
