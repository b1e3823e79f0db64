#!/usr/bin/env python3
"""The function packages `make package` built: for each crate, the size of
<packages_dir>/<crate>/bootstrap.zip against the target of 8 MiB a package, and the
instruction set of its bootstrap. Missing the size target is printed, not failed: it is
a figure to watch. A package that is missing, has no bootstrap, or holds one that is
not an aarch64 Linux executable (Terraform deploys the functions as arm64) exits 1."""

import argparse
import struct
import sys
import zipfile
from pathlib import Path

MIB = 1024 * 1024
TARGET_BYTES = 8 * MIB
EM_AARCH64 = 183


def bootstrap_machine(package: Path) -> str | None:
    """The ELF machine of the package's bootstrap: "aarch64", another name, or None."""
    with zipfile.ZipFile(package) as archive:
        try:
            header = archive.open("bootstrap").read(20)
        except KeyError:
            return None
    if header[:4] != b"\x7fELF":
        return "not ELF"
    byte_order = "<" if header[5] == 1 else ">"
    (machine,) = struct.unpack(byte_order + "H", header[18:20])
    return "aarch64" if machine == EM_AARCH64 else f"ELF machine {machine}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("packages_dir", type=Path)
    parser.add_argument("crates", nargs="+")
    args = parser.parse_args()

    failed = False
    print(f"{'package':<12} {'zip MiB':>8}  bootstrap  target < {TARGET_BYTES // MIB} MiB")
    for crate in args.crates:
        package = args.packages_dir / crate / "bootstrap.zip"
        if not package.is_file():
            print(f"{crate:<12} {'-':>8}  no package at {package}")
            failed = True
            continue
        size = package.stat().st_size
        machine = bootstrap_machine(package)
        if machine != "aarch64":
            failed = True
        verdict = "met" if size < TARGET_BYTES else "MISSED"
        print(f"{crate:<12} {size / MIB:>8.2f}  {machine or 'missing':<9}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
