#!/usr/bin/python3
# PyTorch's float32 -> bfloat16 conversion (torch 1.13, tensor.bfloat16() on
# the CPU) on values chosen to hit every branch of a rounding routine: exact
# ties with an even and an odd kept half, one ulp either side of a tie,
# signed zeros, subnormals (including the largest, which rounds up into the
# normals), the largest finite float and bfloat16's own maximum (overflow to
# Inf), infinities, quiet and signalling NaNs with payloads and signs, then
# random bit patterns and random normal values.  One line per value:
#   <float32 bits hex> <bfloat16 bits hex>
# Regenerate with:
#   /usr/bin/python3 tools/ref/bf16_ref.py > tests/fixtures/trainer/bf16_ref.txt
import torch

fixed = [
    0x00000000, 0x80000000,                         # +-0
    0x3f800000, 0xbf800000,                         # +-1 (exact)
    0x3f808000, 0x3f818000, 0xbf808000, 0xbf818000,  # ties: even kept half stays, odd rounds up
    0x3f807fff, 0x3f808001, 0x3f817fff, 0x3f818001,  # one ulp below / above a tie
    0x3f80ffff, 0x3fffffff, 0x3fff8000,             # carries into the exponent
    0x00000001, 0x80000001, 0x00007fff, 0x00008000,  # subnormals
    0x00008001, 0x00018000, 0x00010000, 0x007f8000,
    0x007fffff, 0x807fffff, 0x00800000, 0x00808000,  # largest subnormal, smallest normal
    0x7f7f0000, 0xff7f0000,                         # bf16's largest finite value
    0x7f7f7fff, 0x7f7f8000, 0x7f7fffff, 0xff7fffff,  # below the tie stays, the tie and FLT_MAX overflow
    0x7f800000, 0xff800000,                         # +-Inf
    0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001,  # NaNs: quiet, signalling, signed
    0x7fffffff, 0x7f810000, 0x7fc0ffff, 0x7f80ffff,
    0x47800000, 0x477fffff, 0x38000000, 0x33800000,  # powers of two around fp16's range
]
g = torch.Generator().manual_seed(1234)
rand_bits = torch.randint(0, 2**32, (600,), generator=g, dtype=torch.int64).tolist()
normals = torch.randn(600, generator=g) * torch.exp(torch.randn(600, generator=g) * 8)
norm_bits = (normals.view(torch.int32).to(torch.int64) & 0xffffffff).tolist()
bits = fixed + rand_bits + norm_bits
signed = [b - 2**32 if b >= 2**31 else b for b in bits]
f = torch.tensor(signed, dtype=torch.int32).view(torch.float32)
h = (f.bfloat16().view(torch.int16).to(torch.int64) & 0xffff).tolist()
for b, o in zip(bits, h):
    print("%08x %04x" % (b, o))
