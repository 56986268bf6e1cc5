"""Smallest ONNX graphs on which ONNX Runtime under qemu-aarch64 ``-cpu max`` goes wrong.

Builds tiny single-op graphs with ``onnx.helper`` (x86, main venv), runs every one of them in
one aarch64 python process per emulated CPU model (qemu-user, ``bench/arm64_env.sh`` builds
the sysroot and wheels) and compares each output with a numpy reference computed here, and
with x86 ONNX Runtime. Ops: MatMulInteger (u8 x s8 / u8 x u8 / s8 x s8, per-tensor and
per-column B zero point, constant and non-constant B), DynamicQuantizeLinear -> MatMulInteger,
com.microsoft DynamicQuantizeMatMul / MatMulIntegerToFloat / QAttention, QLinearMatMul and a
static QDQ MatMul (Q -> DQ -> MatMul with int8 DQ weights, which ORT fuses). Shapes: M 1..64,
K 32..384 (also non-multiples of 8), N 8..384. Each CPU's HWCAP bits are printed, which
shows which MLAS int8 GEMM kernel runs (i8mm -> SMMLA/UMMLA, asimddp -> SDOT/UDOT, else NEON).

    python bench/arm64_repro.py --env /tmp/arm            # 229 graphs x 8 CPU variants, ~1.5 min
    python bench/arm64_repro.py --quick --cpus "max;max,sme=off" --no-write   # minimal, ~15 s

``--cpus`` takes qemu ``-cpu`` strings (``max,sve=off`` etc.); ``--ort-site DIR`` puts
another aarch64 onnxruntime (e.g. ``/tmp/arm/site127``) in front of ``ENV/site``.
The worker half of this file (``--worker``) runs under qemu and needs only numpy +
onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
QEMU = "qemu-aarch64-static"

HWBITS1 = {"asimddp": 20, "sve": 22}
HWBITS2 = {"sve2": 1, "svei8mm": 9, "i8mm": 13, "bf16": 14, "sme": 23}


def hwcaps() -> dict:
    import ctypes

    g = ctypes.CDLL(None).getauxval
    g.restype, g.argtypes = ctypes.c_ulong, [ctypes.c_ulong]
    h1, h2 = g(16), g(26)
    out = {"hwcap": hex(h1), "hwcap2": hex(h2)}
    out.update({k: bool(h1 >> b & 1) for k, b in HWBITS1.items()})
    out.update({k: bool(h2 >> b & 1) for k, b in HWBITS2.items()})
    return out


# ----------------------------------------------------------------------------- SMOPA (aarch64)
# The one instruction behind the -cpu max failure, checked on its own: SME SMOPA (4-way,
# int8 -> int32 outer product into ZA0.S..ZA3.S), read back both with STR ZA and with byte
# MOVA slices (za0h.b[w14, 0..3], the way ORT's KleidiAI kernel reads its 4 tiles). Assembled
# with `llvm-mc-14 --triple=aarch64 -mattr=+sme` from (cntb gives SVL in streaming mode):
#   stp d8,d9,[sp,#-64]!; stp d10,d11,[sp,#16]; stp d12,d13,[sp,#32]; stp d14,d15,[sp,#48]
#   smstart; cntb x4; ptrue p0.b; zero {za}
#   ld1b {z0.b},p0/z,[x0]; ld1b {z1..z4.b},p0/z,[x1 + t*SVL]          // A, four B vectors
#   smopa za0.s,p0/m,p0/m,z0.b,z1.b  ... smopa za3.s,p0/m,p0/m,z0.b,z4.b
#   1: str za[w12,0],[x2]; x2+=SVL; w12++ < SVL -> 1b                 // whole ZA array
#   2: mov z12.b..z15.b, p0/m, za0h.b[w14,0..3]; st1b each to x3; w14+=4 < SVL -> 2b
#   smstop; mov x0,x4; restore d8-d15; ret
SMOPA_CODE = "e827bc6dea2f016dec37026dee3f036d7f4703d5e4e32004e0e31825ff0008c000a000a421a000a42100048b22a000a42100048b23a000a42100048b24a000a4000081a0010082a0020083a0030084a00c008052400020e14200048b8c0500119f01046b8bffff540e0080520c4002c02d4002c04e4002c06f4002c06ce000e46300048b6de000e46300048b6ee000e46300048b6fe000e46300048bce110011df01046b4bfeff547f4603d5e00304aaee3f436dec37426dea2f416de827c46cc0035fd6"


def smopa_check() -> dict:
    """Run the SMOPA snippet (only where HWCAP2_SME is set) and compare with the Arm spec."""
    import ctypes
    import mmap

    if not hwcaps()["sme"]:
        return {"skipped": "no SME"}
    code = bytes.fromhex(SMOPA_CODE)
    buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(code)
    fn = ctypes.CFUNCTYPE(ctypes.c_long, *[ctypes.c_void_p] * 4)(
        ctypes.addressof(ctypes.c_char.from_buffer(buf))
    )
    rng = np.random.default_rng(1)
    A = rng.integers(-128, 128, 256, dtype=np.int8)
    B = rng.integers(-128, 128, 4 * 256, dtype=np.int8)
    o1, o2 = np.zeros(256 * 256, np.uint8), np.zeros(256 * 256, np.uint8)
    svl = fn(A.ctypes.data, B.ctypes.data, o1.ctypes.data, o2.ctypes.data)
    za = o1[: svl * svl].reshape(svl, svl)
    mv = o2[: svl * svl].reshape(svl, svl)
    n = svl // 4
    a = A[:svl].astype(np.int64).reshape(n, 4)
    res: dict = {"svl_bytes": int(svl)}
    for t in range(4):
        exp = (a @ B[t * svl : (t + 1) * svl].astype(np.int64).reshape(n, 4).T).astype(np.int32)
        got = za[t::4].copy().view(np.int32)  # ZAt.S row i is ZA array row 4i+t
        ok = got == exp
        res[f"za{t}.s"] = {
            "wrong": f"{int((~ok).sum())}/{ok.size}",
            "right_only_at_even_row_and_col": bool(
                ok[::2, ::2].all() and not ok[1::2].any() and not ok[:, 1::2].any()
            ),
            "mova_b_equals_str_za": bool(np.array_equal(za[t::4], mv[t::4])),
        }
    return res


# ----------------------------------------------------------------------------- worker (aarch64)
def worker(manifest: str, out: str) -> None:
    import onnxruntime as ort

    cases = json.loads(Path(manifest).read_text())
    res = {}
    t0 = time.time()
    for c in cases:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        try:
            s = ort.InferenceSession(c["model"], so, providers=["CPUExecutionProvider"])
            feeds = dict(np.load(c["inputs"]))
            res[c["id"]] = s.run(None, feeds)[0]
        except Exception as e:  # noqa: BLE001
            print(f"{c['id']}: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
    np.savez(out, **res)
    print(
        json.dumps(
            {
                "ort": ort.__version__,
                "hw": hwcaps(),
                "smopa": smopa_check(),
                "s": round(time.time() - t0, 1),
            }
        )
    )


# ----------------------------------------------------------------------------- graphs (x86)
def build_cases(d: Path, quick: bool) -> list[dict]:
    import onnx
    from onnx import TensorProto as TP
    from onnx import helper as h
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(0)
    cases: list[dict] = []
    ELEM = {np.uint8: TP.UINT8, np.int8: TP.INT8, np.float32: TP.FLOAT, np.int32: TP.INT32}

    def vi(name, arr):
        return h.make_tensor_value_info(name, ELEM[arr.dtype.type], list(arr.shape))

    def save(cid, op, shape, nodes, inits, feeds, out_name, out_type, ref, kind, tol, **info):
        g = h.make_graph(
            nodes,
            cid,
            [vi(k, v) for k, v in feeds.items()],
            [h.make_tensor_value_info(out_name, out_type, None)],
            [nh.from_array(v, k) for k, v in inits.items()],
        )
        m = h.make_model(
            g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)]
        )
        m.ir_version = 8
        p = d / f"{cid}.onnx"
        onnx.save(m, p)
        np.savez(d / f"{cid}.npz", **feeds)
        np.save(d / f"{cid}.ref.npy", ref)
        cases.append(
            {
                "id": cid,
                "op": op,
                "shape": shape,
                "model": str(p),
                "inputs": str(d / f"{cid}.npz"),
                "ref": str(d / f"{cid}.ref.npy"),
                "kind": kind,
                "tol": tol,
                **info,
            }
        )

    def rand(dt, shape):
        lo, hi = (0, 256) if dt is np.uint8 else (-128, 128)
        return rng.integers(lo, hi, size=shape).astype(dt)

    if quick:  # every op once, at the smallest shape that goes wrong on -cpu max
        grid = small = [(1, 32, 8)]
    else:
        grid = [
            (m, k, n)
            for m in (1, 3, 8, 17, 64)
            for k in (32, 36, 100, 128, 384)
            for n in (8, 24, 96, 384)
        ]
        small = [
            (1, 32, 8),
            (1, 36, 24),
            (3, 100, 96),
            (8, 128, 96),
            (17, 384, 384),
            (64, 128, 384),
            (64, 384, 96),
        ]

    # (a) MatMulInteger: exact integer reference
    combos = [("u8s8", np.uint8, np.int8), ("u8u8", np.uint8, np.uint8), ("s8s8", np.int8, np.int8)]
    for tname, ta, tb in combos:
        for zpmode in ("tensor", "column"):
            for bconst in (True, False):
                if quick and (zpmode, bconst) != ("tensor", True):
                    continue
                g_ = grid if (tname == "u8s8" and zpmode == "tensor" and bconst) else small
                for M, K, N in g_:
                    A, B = rand(ta, (M, K)), rand(tb, (K, N))
                    azp = np.array(rand(ta, ()) // 4, dtype=ta)
                    bzp = (
                        (rand(tb, ()) // 4).astype(tb)
                        if zpmode == "tensor"
                        else (rand(tb, (N,)) // 4).astype(tb)
                    )
                    ref = (A.astype(np.int64) - int(azp)) @ (
                        B.astype(np.int64) - bzp.astype(np.int64)
                    )
                    feeds = {"A": A} if bconst else {"A": A, "B": B}
                    inits = {"azp": azp, "bzp": bzp, **({"B": B} if bconst else {})}
                    cid = f"MatMulInteger_{tname}_zp{zpmode}_{'const' if bconst else 'input'}B_{M}x{K}x{N}"
                    save(
                        cid,
                        f"MatMulInteger {tname} zp/{zpmode} B {'const' if bconst else 'input'}",
                        [M, K, N],
                        [h.make_node("MatMulInteger", ["A", "B", "azp", "bzp"], ["Y"])],
                        inits,
                        feeds,
                        "Y",
                        TP.INT32,
                        ref.astype(np.int32),
                        "int",
                        0,
                    )

    def fmat(shape, s=1.0):
        return (rng.standard_normal(shape) * s).astype(np.float32)

    def qweights(K, N, per_col=False):
        W = fmat((K, N), 0.1)
        sc = (
            (np.abs(W).max(0) / 127).astype(np.float32)
            if per_col
            else np.float32(np.abs(W).max() / 127)
        )
        Wq = np.clip(np.round(W / sc), -127, 127).astype(np.int8)
        return Wq, np.asarray(sc, np.float32)

    def dql(X):  # numpy DynamicQuantizeLinear (uint8)
        lo, hi = min(0.0, float(X.min())), max(0.0, float(X.max()))
        s = np.float32((hi - lo) / 255)
        zp = np.uint8(np.clip(np.round(-lo / s), 0, 255))
        q = np.clip(np.round(X / s) + zp, 0, 255).astype(np.uint8)
        return q, s, zp

    for M, K, N in small:
        # (b) DynamicQuantizeLinear -> MatMulInteger (int32 out; reference quantizes the same way)
        X = fmat((M, K))
        Wq, _ = qweights(K, N)
        q, s, zp = dql(X)
        ref = (q.astype(np.int64) - int(zp)) @ Wq.astype(np.int64)
        save(
            f"DQL_MatMulInteger_{M}x{K}x{N}",
            "DynamicQuantizeLinear->MatMulInteger",
            [M, K, N],
            [
                h.make_node("DynamicQuantizeLinear", ["X"], ["q", "s", "zp"]),
                h.make_node("MatMulInteger", ["q", "W", "zp"], ["Y"]),
            ],
            {"W": Wq},
            {"X": X},
            "Y",
            TP.INT32,
            ref.astype(np.int32),
            "int",
            1,
        )
        # (b') the same followed by Cast/Mul, which ORT fuses into DynamicQuantizeMatMul
        Wq2, ws = qweights(K, N, per_col=True)
        ref = X @ (Wq2.astype(np.float32) * ws)
        save(
            f"DQL_MatMulInteger_Cast_Mul_{M}x{K}x{N}",
            "DQL->MatMulInteger->Cast->Mul (fused)",
            [M, K, N],
            [
                h.make_node("DynamicQuantizeLinear", ["X"], ["q", "s", "zp"]),
                h.make_node("MatMulInteger", ["q", "W", "zp"], ["yi"]),
                h.make_node("Cast", ["yi"], ["yf"], to=TP.FLOAT),
                h.make_node("Mul", ["s", "ws"], ["sc"]),
                h.make_node("Mul", ["yf", "sc"], ["Y"]),
            ],
            {"W": Wq2, "ws": ws},
            {"X": X},
            "Y",
            TP.FLOAT,
            ref,
            "float",
            0.03,
        )
        # (c) DynamicQuantizeMatMul, per-tensor and per-column B scale, with bias
        for pc in (False, True):
            Wq, ws = qweights(K, N, per_col=pc)
            bias = fmat((N,), 0.1)
            ref = X @ (Wq.astype(np.float32) * ws) + bias
            save(
                f"DynamicQuantizeMatMul_{'col' if pc else 'tensor'}_{M}x{K}x{N}",
                f"DynamicQuantizeMatMul scale/{'column' if pc else 'tensor'}",
                [M, K, N],
                [
                    h.make_node(
                        "DynamicQuantizeMatMul",
                        ["X", "W", "ws", "", "bias"],
                        ["Y"],
                        domain="com.microsoft",
                    )
                ],
                {"W": Wq, "ws": ws.reshape(-1) if pc else ws, "bias": bias},
                {"X": X},
                "Y",
                TP.FLOAT,
                ref,
                "float",
                0.03,
            )
        # (d) MatMulIntegerToFloat u8 x s8 with zero points
        A = rand(np.uint8, (M, K))
        azp = np.uint8(120)
        asc = np.float32(0.02)
        Wq, ws = qweights(K, N, per_col=True)
        bzp = (rand(np.int8, (N,)) // 16).astype(np.int8)
        ref = ((A.astype(np.float32) - 120) * asc) @ ((Wq.astype(np.float32) - bzp) * ws)
        save(
            f"MatMulIntegerToFloat_{M}x{K}x{N}",
            "MatMulIntegerToFloat u8s8",
            [M, K, N],
            [
                h.make_node(
                    "MatMulIntegerToFloat",
                    ["A", "W", "asc", "ws", "azp", "bzp"],
                    ["Y"],
                    domain="com.microsoft",
                )
            ],
            {"W": Wq, "asc": asc, "ws": ws, "azp": azp, "bzp": bzp},
            {"A": A},
            "Y",
            TP.FLOAT,
            ref,
            "float",
            1e-4,
        )
        # (f) QLinearMatMul u8 x s8 -> u8
        yr = ref
        ysc = np.float32((yr.max() - yr.min()) / 255)
        yzp = np.uint8(np.clip(np.round(-yr.min() / ysc), 0, 255))
        yq = np.clip(np.round(yr / ysc) + yzp, 0, 255).astype(np.uint8)
        save(
            f"QLinearMatMul_{M}x{K}x{N}",
            "QLinearMatMul u8s8",
            [M, K, N],
            [
                h.make_node(
                    "QLinearMatMul", ["A", "asc", "azp", "W", "ws", "bzp", "ysc", "yzp"], ["Y"]
                )
            ],
            {"W": Wq, "asc": asc, "ws": ws, "azp": azp, "bzp": bzp, "ysc": ysc, "yzp": yzp},
            {"A": A},
            "Y",
            TP.UINT8,
            yq,
            "int",
            1,
        )
        # (g) static QDQ MatMul: X -> Q(u8) -> DQ -> MatMul(DQ(int8 W per column))
        xs = np.float32(np.abs(X).max() / 127)
        xzp = np.uint8(128)
        xq = np.clip(np.round(X / xs) + 128, 0, 255)
        ref = ((xq - 128) * xs).astype(np.float32) @ (Wq.astype(np.float32) * ws)
        save(
            f"QDQ_MatMul_{M}x{K}x{N}",
            "static QDQ MatMul (fused)",
            [M, K, N],
            [
                h.make_node("QuantizeLinear", ["X", "xs", "xzp"], ["xq"]),
                h.make_node("DequantizeLinear", ["xq", "xs", "xzp"], ["xd"]),
                h.make_node("DequantizeLinear", ["W", "ws", "wzp"], ["wd"], axis=1),
                h.make_node("MatMul", ["xd", "wd"], ["Y"]),
            ],
            {"W": Wq, "ws": ws, "wzp": np.zeros(N, np.int8), "xs": xs, "xzp": xzp},
            {"X": X},
            "Y",
            TP.FLOAT,
            ref,
            "float",
            1e-4,
        )

    # (e) QAttention: batch 1, seq 8, hidden 32, 2 heads (and seq 16, hidden 64, 4 heads)
    for S, H, heads in ((8, 32, 2),) if quick else ((8, 32, 2), (16, 64, 4), (32, 384, 12)):
        X = rand(np.uint8, (1, S, H))
        izp = np.uint8(128)
        isc = np.float32(0.02)
        Wq, ws = qweights(H, 3 * H)
        wzp = np.int8(0)
        bias = fmat((3 * H,), 0.1)
        x = (X.astype(np.float32) - 128) * isc
        qkv = x @ (Wq.astype(np.float32) * ws) + bias
        hd = H // heads
        q, k, v = (
            qkv[..., i * H : (i + 1) * H].reshape(1, S, heads, hd).transpose(0, 2, 1, 3)
            for i in range(3)
        )
        sc = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
        p = np.exp(sc - sc.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        ref = (p @ v).transpose(0, 2, 1, 3).reshape(1, S, H).astype(np.float32)
        save(
            f"QAttention_s{S}_h{H}_n{heads}",
            "QAttention u8s8",
            [S, H, 3 * H],
            [
                h.make_node(
                    "QAttention",
                    ["X", "W", "bias", "isc", "ws", "", "izp", "wzp"],
                    ["Y"],
                    domain="com.microsoft",
                    num_heads=heads,
                )
            ],
            {"W": Wq, "bias": bias, "isc": isc, "ws": ws, "izp": izp, "wzp": wzp},
            {"X": X},
            "Y",
            TP.FLOAT,
            ref,
            "float",
            1e-3,
        )
    return cases


def compare(c: dict, out: np.ndarray | None) -> dict:
    ref = np.load(c["ref"])
    if out is None:
        return {"ok": False, "err": None, "bad": None}
    if c["kind"] == "int":
        diff = np.abs(out.astype(np.int64) - ref.astype(np.int64))
        bad = diff > c["tol"]
        err = int(diff.max())
    else:
        diff = np.abs(out.astype(np.float64) - ref)
        err = float(diff.max() / max(np.abs(ref).max(), 1e-12))
        bad = diff > c["tol"] * max(np.abs(ref).max(), 1e-12)
    r = {"ok": not bad.any(), "err": err, "bad": f"{int(bad.sum())}/{bad.size}"}
    if bad.any() and bad.ndim == 2:  # where it goes wrong: rows/columns that have a bad entry
        rows, cols = np.nonzero(bad)
        r["bad_rows"] = sorted(set(rows.tolist()))[:8]
        r["bad_cols"] = sorted(set(cols.tolist()))[:12]
    return r


def run_cpu(env: Path, cpu: str, manifest: Path, outdir: Path, ort_site: str | None) -> dict:
    out = outdir / f"out_{cpu.replace(',', '_').replace('=', '-')}.npz"
    pp = ":".join(([ort_site] if ort_site else []) + [str(env / "site")])
    cmd = [
        QEMU,
        "-cpu",
        cpu,
        "-L",
        str(env / "sysroot"),
        str(env / "sysroot/usr/bin/python3.11"),
        str(Path(__file__).resolve()),
        "--worker",
        str(manifest),
        str(out),
    ]
    t = time.time()
    p = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": pp, "HOME": str(env / "home")},
    )
    if p.returncode != 0 or not out.exists():
        return {"cpu": cpu, "error": p.stderr[-2000:], "wall_s": round(time.time() - t, 1)}
    info = json.loads(p.stdout.strip().splitlines()[-1])
    outs = dict(np.load(out))
    return {
        "cpu": cpu,
        **info,
        "wall_s": round(time.time() - t, 1),
        "stderr": p.stderr[-1500:],
        "outputs": outs,
    }


def kernel_for(hw: dict) -> str:
    if hw.get("sme"):
        return "KleidiAI SME (DynamicQGemm, sgemm) + SMMLA/UMMLA"
    if hw.get("i8mm"):
        return "SMMLA/UMMLA (i8mm)"
    if hw.get("asimddp"):
        return "SDOT/UDOT"
    return "NEON (no dot)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=2, metavar=("MANIFEST", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--env",
        default=os.environ.get("ARM64_ENV", "/tmp/arm"),
        help="aarch64 env from bench/arm64_env.sh (sysroot/, site/)",
    )
    ap.add_argument(
        "--cpus",
        default="max,cortex-a72,cortex-a76,neoverse-n1,a64fx;max,sve=off;max,sme=off;max,pauth=off",
        help="';'-separated qemu -cpu values",
    )
    ap.add_argument(
        "--ort-site", default=None, help="aarch64 onnxruntime overlay dir (in front of ENV/site)"
    )
    ap.add_argument("--quick", action="store_true", help="every op once, at M,K,N = 1,32,8")
    ap.add_argument("--name", default="arm64_repro")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument(
        "--qemu",
        default=os.environ.get("QEMU_AARCH64", "qemu-aarch64-static"),
        help="qemu-user binary (e.g. a newer one: /tmp/arm/qemu10/x/usr/bin/qemu-aarch64)",
    )
    a = ap.parse_args()
    global QEMU
    QEMU = a.qemu
    if a.worker:
        return worker(*a.worker)

    import onnxruntime as ort

    cpus = [
        c
        for part in a.cpus.split(";")
        for c in (part.split(",") if all("=" not in x for x in part.split(",")) else [part])
    ]
    tmp = Path(tempfile.mkdtemp(prefix="arm64_repro_", dir=a.env if Path(a.env).is_dir() else None))
    cases = build_cases(tmp, a.quick)
    manifest = tmp / "manifest.json"
    manifest.write_text(json.dumps(cases))
    print(f"{len(cases)} graphs in {tmp}", flush=True)

    # x86 ORT as a second reference
    x86 = {}
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    for c in cases:
        s = ort.InferenceSession(c["model"], so, providers=["CPUExecutionProvider"])
        x86[c["id"]] = compare(c, s.run(None, dict(np.load(c["inputs"])))[0])

    runs = []
    for cpu in cpus:
        r = run_cpu(Path(a.env), cpu, manifest, tmp, a.ort_site)
        if "error" in r:
            print(f"cpu {cpu}: FAILED {r['error'][-500:]}", flush=True)
            runs.append(r)
            continue
        outs = r.pop("outputs")
        r["cases"] = {c["id"]: compare(c, outs.get(c["id"])) for c in cases}
        nbad = sum(not v["ok"] for v in r["cases"].values())
        print(
            f"cpu {cpu}: ort {r['ort']} kernel {kernel_for(r['hw'])} {nbad}/{len(cases)} wrong "
            f"({r['wall_s']} s)",
            flush=True,
        )
        runs.append(r)

    ok_runs = [r for r in runs if "cases" in r]
    # Per op family x CPU: wrong/total and worst error
    fams = list(dict.fromkeys(c["op"] for c in cases))
    hdr = "| op | " + " | ".join(r["cpu"] for r in ok_runs) + " | x86 |"
    table = [
        "Wrong graphs / graphs per op (worst error: int = max |diff|, float = max |diff| / max |ref|).",
        "",
        "| CPU | hwcaps | MLAS int8 GEMM kernel | ORT |",
        "|---|---|---|---|",
        *[
            f"| {r['cpu']} | "
            + " ".join(k for k, v in r["hw"].items() if v is True)
            + f" | {kernel_for(r['hw'])} | {r['ort']} |"
            for r in ok_runs
        ],
        "",
        hdr,
        "|---" * (len(ok_runs) + 2) + "|",
    ]
    for f in fams:
        ids = [c["id"] for c in cases if c["op"] == f]
        cells = []
        for res in [r["cases"] for r in ok_runs] + [x86]:
            wrong = sum(not res[i]["ok"] for i in ids)
            worst = max((res[i]["err"] or 0) for i in ids)
            cells.append(f"{wrong}/{len(ids)} ({worst:.3g})" if wrong else f"ok ({worst:.2g})")
        table.append(f"| {f} | " + " | ".join(cells) + " |")
    table += ["", "SME SMOPA (int8 -> int32, 4-way) executed directly, vs the Arm spec:", ""]
    for r in ok_runs:
        sm = r.get("smopa", {})
        if "skipped" in sm:
            table.append(f"- {r['cpu']}: skipped ({sm['skipped']})")
        else:
            table.append(
                f"- {r['cpu']}: SVL {sm['svl_bytes']} bytes; "
                + "; ".join(
                    f"{k} wrong {v['wrong']}"
                    + (
                        " (right only at even row & even column)"
                        if v["right_only_at_even_row_and_col"]
                        else ""
                    )
                    for k, v in sm.items()
                    if k.startswith("za")
                )
            )
    # smallest failing shapes on each CPU
    table += ["", "Smallest wrong graphs per CPU:", ""]
    for r in ok_runs:
        bad = [c for c in cases if not r["cases"][c["id"]]["ok"]]
        bad.sort(key=lambda c: int(np.prod(c["shape"])))
        for c in bad[:4]:
            rc = r["cases"][c["id"]]
            table.append(
                f"- {r['cpu']}: `{c['id']}` wrong {rc['bad']}, err {rc['err']:.3g}"
                + (f", bad cols {rc.get('bad_cols')}" if "bad_cols" in rc else "")
            )
        if not bad:
            table.append(f"- {r['cpu']}: none")
    print("\n".join(table))
    result = {
        "cpus": cpus,
        "ort_site": a.ort_site,
        "quick": a.quick,
        "x86_ort": ort.__version__,
        "qemu": subprocess.run(
            [QEMU, "--version"], capture_output=True, text=True
        ).stdout.splitlines()[0],
        "cases": [{k: c[k] for k in ("id", "op", "shape")} for c in cases],
        "x86": x86,
        "runs": ok_runs,
        "failed_runs": [r for r in runs if "error" in r],
    }
    if not a.no_write:
        sys.path.insert(0, str(HERE))
        from common import write_results

        write_results(
            a.name, result, "aarch64 (qemu-user) int8 kernels vs numpy, per emulated CPU", table
        )
    else:
        (tmp / "result.json").write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
