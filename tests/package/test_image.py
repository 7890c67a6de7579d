#!/usr/bin/env python3
"""The FROM-scratch image (deploy/Containerfile) is self-contained (root needed, for chroot).

    python3 tests/package/test_image.py BUILD_DIR

Builds it with `podman build` (deploy/build-image.sh; installs podman when missing), checks
its entry point, user and size, exports its filesystem (`podman create` + `podman export`),
checks the root holds nothing but the binaries, the libraries collect-libs.sh listed and the
small /etc, then runs the image's worker from that root with `chroot` as the image's non-root
user (uid 10001) on 127.0.0.1, and lets the host's build/bin/master drive a short run against
nginx on loopback (report == nginx's access log). `podman run` is not used: the sandbox here
refuses its setrlimit. Removes the container, the image and the exported root.
"""

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import pkglib

TAG = "localhost/stampede-test:package-test"


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: test_image.py BUILD_DIR")
    build = os.path.abspath(sys.argv[1])
    pkglib.require_root("test_image")
    pkglib.ensure_debian_packages(["podman", "nginx-light"])
    pkglib.run(["cmake", "--build", build, "--target", "master", "worker"])

    tmp = tempfile.mkdtemp(prefix="stampede-image-")
    container = None
    try:
        pkglib.run(["bash", os.path.join(pkglib.SOURCE_DIR, "deploy", "build-image.sh"), build,
                    TAG])
        config = json.loads(pkglib.run(["podman", "image", "inspect", TAG]).stdout)[0]
        size_mb = config["Size"] / 1e6
        print(f"image {TAG}: {size_mb:.1f} MB")
        assert config["Config"]["Entrypoint"] == ["/usr/bin/stampede-worker"], config["Config"]
        assert config["Config"]["User"] == "10001:10001", config["Config"]
        assert size_mb < 80, f"the image grew to {size_mb:.1f} MB"

        container = pkglib.run(["podman", "create", TAG]).stdout.strip()
        archive = os.path.join(tmp, "rootfs.tar")
        pkglib.run(["podman", "export", "-o", archive, container])
        root = os.path.join(tmp, "root")
        os.makedirs(root)
        with tarfile.open(archive) as tar:
            tar.extractall(root)
        check_contents(root, os.path.join(build, "image", "libraries.txt"))

        version = pkglib.run(["chroot", "--userspec=10001:10001", root,
                              "/usr/bin/stampede-worker", "--version"]).stdout.strip()
        assert version.startswith("stampede worker "), version
        master = os.path.join(build, "bin", "master")
        requests = pkglib.drive_run(
            [master], ["chroot", "--userspec=10001:10001", root, "/usr/bin/stampede-worker"],
            worker_args=["--allow-target", "127.0.0.1/32"])
        print(f"host master + image worker (chroot, uid 10001): {requests} requests == "
              f"nginx's log")
        # The image's master too, as the chroot's user, reaching a worker from the same root.
        requests = pkglib.drive_run(
            ["chroot", "--userspec=10001:10001", root, "/usr/bin/stampede-master"],
            ["chroot", "--userspec=10001:10001", root, "/usr/bin/stampede-worker"],
            duration="1s", out_root=root, out_uid=10001)
        print(f"image master + image worker: {requests} requests == nginx's log")
    finally:
        if container:
            subprocess.run(["podman", "rm", "-f", container], capture_output=True)
        subprocess.run(["podman", "rmi", "-f", TAG], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print("test_image: 1 passed, 0 failed")


def check_contents(root, libraries_file):
    """Every file in the root is a binary, a collected library or one of the /etc files."""
    libraries = {line.strip() for line in open(libraries_file) if line.strip()}
    assert any("libzmq" in l for l in libraries) and any("ld-linux" in l for l in libraries), \
        libraries
    allowed = libraries | {"/usr/bin/stampede-master", "/usr/bin/stampede-worker",
                           "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
                           "/etc/ssl/certs/ca-certificates.crt"}
    found = set()
    for directory, _, files in os.walk(root):
        for name in files:
            found.add("/" + os.path.relpath(os.path.join(directory, name), root))
    # podman adds empty mount points and may add /etc/hosts, /etc/resolv.conf, /run/.containerenv
    extra = {f for f in found - allowed if os.path.getsize(os.path.join(root, f.lstrip("/")))}
    assert not extra, f"unexpected files in the image: {sorted(extra)}"
    missing = allowed - found - {"/etc/ssl/certs/ca-certificates.crt"}
    assert not missing, f"missing from the image: {sorted(missing)}"
    passwd = open(os.path.join(root, "etc", "passwd")).read()
    assert "stampede:x:10001:10001:" in passwd, passwd
    print(f"image root: 2 binaries, {len(libraries)} libraries (ldd), /etc passwd group "
          f"nsswitch.conf")


if __name__ == "__main__":
    main()
