#!/usr/bin/env python3
"""The Debian package, installed for real on this machine and removed again (root needed).

    python3 tests/package/test_deb.py BUILD_DIR

Builds it (`cmake --build BUILD_DIR --target package`; installs help2man and lintian when
missing), runs lintian (no error allowed), then `dpkg -i`: checks the files, the service user,
/etc/stampede's owner and mode, the conffile, `stampede-worker --version`, `systemd-analyze
verify` on the unit; makes keys with the installed `keygen` into /etc/stampede the way the
README says, starts the installed worker as the `stampede` user with them and drives a short
run from the installed master against nginx on 127.0.0.1 (report == nginx's access log).
Finally `dpkg --purge`: every file of the package, /etc/stampede and the user are gone.
Refuses to run when a stampede package or /usr/bin/stampede-* is already there.
"""

import glob
import grp
import os
import pwd
import re
import stat
import subprocess
import sys

import pkglib

PACKAGE = "stampede"


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: test_deb.py BUILD_DIR")
    build = os.path.abspath(sys.argv[1])
    pkglib.require_root("test_deb")
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", PACKAGE],
                            capture_output=True, text=True).stdout
    if "installed" in status or glob.glob("/usr/bin/stampede-*") or os.path.exists(
            "/etc/stampede"):
        raise SystemExit("test_deb: stampede is already installed here (or /usr/bin/stampede-*, "
                         "/etc/stampede exist): remove it first, this test installs and purges")
    pkglib.ensure_debian_packages(["help2man", "lintian", "nginx-light", "adduser"])

    for old in glob.glob(os.path.join(build, "stampede_*.deb")):
        os.remove(old)
    pkglib.run(["cmake", "--build", build, "--target", "package"])
    debs = glob.glob(os.path.join(build, "stampede_*.deb"))
    assert len(debs) == 1, f"expected one stampede_*.deb in {build}, found {debs}"
    deb = debs[0]
    version = re.search(r"project\(stampede VERSION ([0-9.]+)",
                        open(os.path.join(pkglib.SOURCE_DIR, "CMakeLists.txt")).read()).group(1)
    print(f"package: {os.path.basename(deb)}, {os.path.getsize(deb) / 1e6:.2f} MB")

    control = pkglib.run(["dpkg-deb", "-f", deb, "Depends", "Installed-Size"]).stdout
    print(control.strip())
    # From dpkg-shlibdeps: the libraries the binaries link, with versions.
    for lib in ("libc6 (>=", "libzmq5 (>=", "libcurl4 (>=", "libstdc++6 (>="):
        assert lib in control, f"Depends lacks {lib}: {control}"

    lintian = subprocess.run(["lintian", "--allow-root", deb], capture_output=True, text=True)
    print("lintian:", lintian.stdout.strip() or "clean")
    errors = [line for line in lintian.stdout.splitlines() if line.startswith("E:")]
    assert not errors, f"lintian errors:\n{lintian.stdout}"

    files = [line.split()[-1].lstrip(".") for line in
             pkglib.run(["dpkg-deb", "-c", deb]).stdout.splitlines()
             if not line.startswith("d")]
    expected = {"/usr/bin/stampede-master", "/usr/bin/stampede-worker",
                "/lib/systemd/system/stampede-worker.service", "/etc/stampede/worker.env",
                "/usr/share/man/man1/stampede-master.1.gz",
                "/usr/share/man/man1/stampede-worker.1.gz",
                "/usr/share/bash-completion/completions/stampede-worker",
                "/usr/share/doc/stampede/copyright", "/usr/share/doc/stampede/changelog.gz"}
    assert expected <= set(files), f"missing from the package: {expected - set(files)}"

    pkglib.run(["dpkg", "-i", deb])
    try:
        check_installed(version)
    finally:
        pkglib.run(["dpkg", "--purge", PACKAGE])
    leftovers = [f for f in files + ["/etc/stampede"] if os.path.lexists(f)]
    assert not leftovers, f"still there after dpkg --purge: {leftovers}"
    assert not user_exists("stampede"), "the stampede user is still there after purge"
    print("test_deb: 1 passed, 0 failed")


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def check_installed(version):
    out = pkglib.run(["stampede-worker", "--version"]).stdout.strip()
    assert out == f"stampede worker {version}", out
    out = pkglib.run(["stampede-master", "--version"]).stdout.strip()
    assert out == f"stampede master {version}", out
    assert user_exists("stampede"), "postinst did not create the stampede user"
    etc = os.stat("/etc/stampede")
    assert stat.S_IMODE(etc.st_mode) == 0o750, oct(etc.st_mode)
    assert etc.st_uid == 0 and etc.st_gid == grp.getgrnam("stampede").gr_gid, etc
    conffiles = pkglib.run(["dpkg-query", "-W", "-f=${Conffiles}", PACKAGE]).stdout
    assert "/etc/stampede/worker.env" in conffiles, conffiles
    pages = pkglib.run(["man", "-w", "stampede-worker"]).stdout.strip()
    assert pages == "/usr/share/man/man1/stampede-worker.1.gz", pages

    unit = "/lib/systemd/system/stampede-worker.service"
    verify = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True)
    unit_lines = [l for l in (verify.stdout + verify.stderr).splitlines()
                  if "stampede-worker" in l]
    assert verify.returncode == 0 and not unit_lines, (
        f"systemd-analyze verify: exit {verify.returncode}\n{verify.stdout}{verify.stderr}")
    text = open(unit).read()
    assert "ExecStart=/usr/bin/stampede-worker $STAMPEDE_WORKER_ARGS" in text, text
    for line in ("User=stampede", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "CapabilityBoundingSet=", "ReadOnlyPaths=/etc/stampede"):
        assert f"\n{line}\n" in text, f"the unit lost {line}"
    env = open("/etc/stampede/worker.env").read()
    assert "STAMPEDE_WORKER_ARGS=" in env, env

    # Keys the README way, then the installed worker as the service user, reading them.
    master_keys = "/etc/stampede/test-master"
    os.makedirs(master_keys)
    pkglib.run(["stampede-master", "keygen", "--out", master_keys])
    pkglib.run(["install", "-m", "0644", f"{master_keys}/master.pub", "/etc/stampede/"])
    pkglib.run(["stampede-worker", "keygen", "--out", "/etc/stampede"])
    pkglib.run(["chown", "stampede:stampede", "/etc/stampede/worker.key"])
    pkglib.run(["chmod", "0400", "/etc/stampede/worker.key"])
    requests = pkglib.drive_run(
        ["stampede-master"], ["runuser", "-u", "stampede", "--", "/usr/bin/stampede-worker"],
        master_args=["--key", f"{master_keys}/master.key"],
        worker_args=["--master-key", "/etc/stampede/master.pub",
                     "--key", "/etc/stampede/worker.key", "--allow-target", "127.0.0.1/32"])
    print(f"installed master + worker (user stampede): {requests} requests == nginx's log")
    pkglib.run(["rm", "-rf", master_keys])


if __name__ == "__main__":
    main()
