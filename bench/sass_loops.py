"""Lists a compiled kernel's loops (the spans closed by a backward branch) with their length
and opcode mix, from `cuobjdump -sass`: a static view of where instructions go that needs
no GPU, for comparing two versions of a kernel before timing them (runtime counts are
`sass_profile.py`'s job).

    nvcc -std=c++17 -arch=sm_90 --expt-relaxed-constexpr -O3 -Icpp/include -Icpp/src \\
        -c cpp/src/cuda/search_forward.cu -o /tmp/sf.o
    python3 bench/sass_loops.py /tmp/sf.o --kernel 'search_forward_kernelIfLb0ELi2ELb1ELi0E'

--kernel: a substring of the mangled name (without it, the kernels are listed).
--with: opcodes a loop must contain to be listed (default FFMA,LDGSTS).
cuobjdump comes with the CUDA toolkit; without one, `pip download nvidia-cuda-cuobjdump`
and unzip it (bin/cuobjdump), then put it on PATH.
"""
import argparse
import collections
import re
import subprocess


def kernels(obj):
    out = subprocess.run(["cuobjdump", "-sass", obj], capture_output=True, text=True, check=True).stdout
    return re.findall(r"Function : (\S+)", out)


def instructions(obj, name):
    out = subprocess.run(["cuobjdump", "-sass", "-fun", name, obj], capture_output=True, text=True,
                         check=True).stdout
    ins = []
    for line in out.splitlines():
        m = re.match(r"\s+/\*([0-9a-f]+)\*/\s+(.*?)\s*;", line)
        if m:
            ins.append((int(m.group(1), 16), m.group(2)))
    return ins


def opcode(text):
    words = text.split()
    op = words[1] if words[0].startswith("@") and len(words) > 1 else words[0]
    return op.split(".")[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("obj", help="object file or executable with device code")
    ap.add_argument("--kernel", help="substring of the mangled kernel name")
    ap.add_argument("--with", dest="need", default="FFMA,LDGSTS", help="list loops containing any of these")
    a = ap.parse_args()
    names = kernels(a.obj)
    if not a.kernel:
        print("\n".join(names))
        return
    picked = [n for n in names if a.kernel in n]
    if len(picked) != 1:
        raise SystemExit(f"{len(picked)} kernels match {a.kernel!r}")
    ins = instructions(a.obj, picked[0])
    index = {addr: i for i, (addr, _) in enumerate(ins)}
    need = set(a.need.split(","))
    print(f"{picked[0]}: {len(ins)} instructions")
    spans = set()
    for i, (addr, text) in enumerate(ins):
        m = re.search(r"BRA\s+(?:\S+\s+)?0x([0-9a-f]+)", text)
        if m and int(m.group(1), 16) <= addr and int(m.group(1), 16) in index:
            spans.add((index[int(m.group(1), 16)], i))
    for s, e in sorted(spans):
        ops = collections.Counter(opcode(t) for _, t in ins[s:e + 1])
        if need & set(ops):
            mix = " ".join(f"{o}:{n}" for o, n in ops.most_common(9))
            print(f"{s:6d}-{e:6d} {e - s + 1:5d}  {mix}")


if __name__ == "__main__":
    main()
