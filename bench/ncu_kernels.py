"""Lists the kernels of an `ncu --metrics gpu__time_duration.sum` log in launch order, with
their durations (ncu locks clocks, so the figures read a little slower than CUDA events;
compare them with each other).

    ncu --metrics gpu__time_duration.sum --launch-count 20 ./stnls_search_cuda_timing 1 S1 > k.log
    python3 bench/ncu_kernels.py k.log
"""
import re
import sys

LAUNCH = re.compile(r"^  (\S.*?)\s+\(\d+, \d+, \d+\)x\(\d+, \d+, \d+\)", re.M)
DURATION = re.compile(r"gpu__time_duration\.sum\s+(\S+)\s+([\d.,]+)")
NAME = re.compile(r"(\w+_kernel|\w+Kernel)")


def main(path):
    text = open(path).read()
    for launch, (unit, value) in zip(LAUNCH.findall(text), DURATION.findall(text)):
        m = NAME.search(launch)
        print(f"{value:>10} {unit:3s} {m.group(1) if m else launch[:70]}")


if __name__ == "__main__":
    main(sys.argv[1])
