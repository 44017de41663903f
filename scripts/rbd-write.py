#!/usr/bin/python3
"""Writes to and discards from an RBD image through librbd, for tests and the bench (this
kernel has no rbd module, so no `rbd map`). Debian's python3-rbd; run with /usr/bin/python3.

    rbd-write.py CONF POOL IMAGE OP...

OP is w:OFFSET:LENGTH:SEED (LENGTH pseudo-random bytes from SEED, the same for the same
seed), z:OFFSET:LENGTH (zeros written, not discarded), d:OFFSET:LENGTH (discard) or
create:SIZE (a new image with fast-diff). Numbers may end
in K, M or G. Fails with one line on stderr."""
import random
import sys

import rados
import rbd


def number(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    conf, pool, name, ops = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    cluster = rados.Rados(conffile=conf)
    cluster.connect(timeout=30)
    try:
        io = cluster.open_ioctx(pool)
        try:
            for op in ops:
                parts = op.split(":")
                if parts[0] == "create":
                    features = (rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
                                | rbd.RBD_FEATURE_OBJECT_MAP | rbd.RBD_FEATURE_FAST_DIFF)
                    rbd.RBD().create(io, name, number(parts[1]), old_format=False, features=features)
            changes = [op.split(":") for op in ops if not op.startswith("create:")]
            if changes:
                with rbd.Image(io, name) as image:
                    for parts in changes:
                        if parts[0] == "w":
                            offset, length, seed = number(parts[1]), number(parts[2]), int(parts[3])
                            image.write(random.Random(seed).randbytes(length), offset)
                        elif parts[0] == "z":
                            image.write(bytes(number(parts[2])), number(parts[1]))
                        elif parts[0] == "d":
                            image.discard(number(parts[1]), number(parts[2]))
                        else:
                            sys.exit(f"rbd-write.py: unknown operation {':'.join(parts)}")
        finally:
            io.close()
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    try:
        main()
    except (rados.Error, rbd.Error, ValueError, KeyError, IndexError) as error:
        sys.exit(f"rbd-write.py: {error}")
