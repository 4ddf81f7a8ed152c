#!/usr/bin/env python3
"""Configure Kumo: detect dependencies, probe the toolchain, write build.ninja.

    python3 configure.py [--mode=release|debug] [--sanitize=address,undefined|thread]
                         [--prefix=/usr/local] [--cc=gcc] [--install-deps]
    ninja                 # library, tests, benchmarks and examples (built, not run)
    ninja test            # build everything, run every test binary
    ninja perf            # build and run the benchmarks (perf/run)
    ninja install         # copy library, headers and kumo.pc under $DESTDIR<prefix>
    ninja format-check    # clang-format --dry-run --Werror over the sources

One configure is one build directory: build/release, build/debug, build/asan,
build/tsan, ... (build/<dir>/ holds config.h, kumo.pc, objects, outputs and
ninja's logs); build.ninja sits at the top of the tree and describes the
directory configured last. Switching modes is re-running configure; the
other build directories stay as they are.

Sources are found by glob when configure runs: engine/, proc/, registry/ and
transport/ recursively for the library; tests/*.c, perf/*.c and examples/*.c
as one program each, where a file whose name starts with `_` is a helper
compiled once and linked into every program of its folder. build.ninja
depends on configure.py and on the mtime of every folder it globbed, so
adding, removing or renaming a source file re-runs configure on the next
`ninja`, with the options it was last run with.

A program listed in PROGRAM_DEPS needs an optional library (perf/zmq.c:
libzmq, Debian libzmq3-dev): it is compiled and linked with that library's
flags when configure finds it, and left out, with a warning, when not.

Standard library only: this runs before anything else is installed.
"""

import argparse
import glob
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.abspath(__file__))

LIB_DIRS = ["engine", "proc", "registry", "transport"]
PROGRAM_DIRS = ["tests", "perf", "examples"]
FORMAT_DIRS = ["include", "engine", "proc", "registry", "transport", "tests", "perf", "examples",
               "fuzz"]

# Packages `--install-deps` makes sure of (Debian 12).
APT_PACKAGES = [
    "liburing-dev", "libjemalloc-dev", "libxxhash-dev", "libcriterion-dev",
    "ninja-build", "pkg-config", "gcc", "gnuplot-nox", "erlang-base", "libzmq3-dev",
    "libsodium-dev",
]

SONAME = "libkumo.so.0"
DEFAULT_VERSION = "0.1.0"


class Dep:
    """A library found by pkg-config or, failing that, by a compile+link probe."""

    def __init__(self, key, pc, deb, header, libs, code, needed=True, optional=False):
        self.key = key          # short name for messages
        self.pc = pc            # pkg-config module
        self.deb = deb          # Debian package that provides it
        self.header = header
        self.fallback_libs = libs
        self.code = code        # body of main() for the probe
        self.needed = needed
        self.optional = optional  # missing: skip the programs that use it
        self.found = False
        self.how = ""           # "pkg-config 2.3" / "probe" / "not used"
        self.cflags = []
        self.libs = []


def dependencies(use_jemalloc):
    return [
        Dep("liburing", "liburing", "liburing-dev", "liburing.h", ["-luring"],
            "struct io_uring r; return io_uring_queue_init(1, &r, 0) == 12345;"),
        Dep("jemalloc", "jemalloc", "libjemalloc-dev", "jemalloc/jemalloc.h", ["-ljemalloc"],
            "void *p = mallocx(16, 0); sdallocx(p, 16, 0); return 0;", needed=use_jemalloc),
        Dep("libxxhash", "libxxhash", "libxxhash-dev", "xxhash.h", ["-lxxhash"],
            "return (int)(XXH3_64bits(\"k\", 1) & 1);"),
        # HMAC-SHA256 and random nonces for the links' cookie handshake
        # (transport/stream/auth.c): a crypto library, not our own SHA-256.
        Dep("libsodium", "libsodium", "libsodium-dev", "sodium.h", ["-lsodium"],
            "return sodium_init() < -1;"),
        Dep("criterion", "criterion", "libcriterion-dev", "criterion/criterion.h",
            ["-lcriterion"], None),
        Dep("libzmq", "libzmq", "libzmq3-dev", "zmq.h", ["-lzmq"],
            "void *c = zmq_ctx_new(); return zmq_ctx_term(c);", optional=True),
    ]


# Programs that need an optional dependency: built with its flags when it is
# found, left out (configure says so) when it is not.
PROGRAM_DEPS = {
    "perf/zmq.c": "libzmq",     # ZeroMQ baselines for the transports (issue 3)
}


# Compile probes: (macro, deps whose flags the probe uses, program). A probe is
# 1 when the program compiles and links. These say what the headers and
# libraries we build against offer; whether the running kernel supports a
# feature is still probed at start-up (docs/architecture.md §6).
URING = "#include <liburing.h>\n"
PROBES = [
    ("KUMO_HAVE_IO_URING_PREP_MSG_RING", ["liburing"], URING + """
int main(void) { struct io_uring r; io_uring_queue_init(2, &r, 0);
  io_uring_prep_msg_ring(io_uring_get_sqe(&r), 0, 0, 0, 0); return 0; }"""),
    ("KUMO_HAVE_IO_URING_PREP_SEND_ZC", ["liburing"], URING + """
int main(void) { struct io_uring r; io_uring_queue_init(2, &r, 0);
  io_uring_prep_send_zc(io_uring_get_sqe(&r), 0, 0, 0, 0, 0); return 0; }"""),
    ("KUMO_HAVE_IO_URING_PREP_SENDMSG_ZC", ["liburing"], URING + """
int main(void) { struct io_uring r; struct msghdr m = {0}; io_uring_queue_init(2, &r, 0);
  io_uring_prep_sendmsg_zc(io_uring_get_sqe(&r), 0, &m, 0); return 0; }"""),
    ("KUMO_HAVE_IO_URING_PREP_RECV_MULTISHOT", ["liburing"], URING + """
int main(void) { struct io_uring r; io_uring_queue_init(2, &r, 0);
  io_uring_prep_recv_multishot(io_uring_get_sqe(&r), 0, 0, 0, 0); return 0; }"""),
    ("KUMO_HAVE_IO_URING_SETUP_DEFER_TASKRUN", ["liburing"], URING + """
int main(void) { unsigned f = IORING_SETUP_DEFER_TASKRUN; return (int)(f & 0); }"""),
    ("KUMO_HAVE_IO_URING_SETUP_SINGLE_ISSUER", ["liburing"], URING + """
int main(void) { unsigned f = IORING_SETUP_SINGLE_ISSUER; return (int)(f & 0); }"""),
    ("KUMO_HAVE_IO_URING_SETUP_COOP_TASKRUN", ["liburing"], URING + """
int main(void) { unsigned f = IORING_SETUP_COOP_TASKRUN; return (int)(f & 0); }"""),
    ("KUMO_HAVE_IO_URING_REGISTER_BUF_RING", ["liburing"], URING + """
int main(void) { struct io_uring r; struct io_uring_buf_reg reg = {0};
  io_uring_queue_init(2, &r, 0); return io_uring_register_buf_ring(&r, &reg, 0); }"""),
    ("KUMO_HAVE_IO_URING_SETUP_BUF_RING", ["liburing"], URING + """
int main(void) { struct io_uring r; int err; io_uring_queue_init(2, &r, 0);
  return io_uring_setup_buf_ring(&r, 8, 0, 0, &err) != 0; }"""),
    ("KUMO_HAVE_PTHREAD_SETAFFINITY", [], """
#include <pthread.h>
#include <sched.h>
int main(void) { cpu_set_t s; CPU_ZERO(&s); CPU_SET(0, &s);
  return pthread_setaffinity_np(pthread_self(), sizeof s, &s); }"""),
    ("KUMO_HAVE_MEMFD_CREATE", [], """
#include <sys/mman.h>
int main(void) { return memfd_create("kumo", MFD_CLOEXEC) < 0; }"""),
]


def die(msg):
    sys.stderr.write("configure.py: error: " + msg.rstrip() + "\n")
    sys.exit(1)


def warn(msg):
    sys.stderr.write("configure.py: warning: " + msg.rstrip() + "\n")


def run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, **kw)


# --------------------------------------------------------------------------
# --install-deps
# --------------------------------------------------------------------------

def deb_installed(pkg):
    try:
        r = run(["dpkg", "-s", pkg])
    except OSError:
        die("--install-deps needs dpkg/apt-get (Debian 12 or a derivative)")
    return r.returncode == 0 and any(
        line.startswith("Status:") and line.split()[-1] == "installed"
        for line in r.stdout.splitlines())


def install_deps():
    missing = [p for p in APT_PACKAGES if not deb_installed(p)]
    if not missing:
        print("deps: all of %s already installed" % " ".join(APT_PACKAGES))
        return
    cmd = ("apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
           + " ".join(missing))
    if os.geteuid() != 0:
        die("missing Debian packages: %s\n"
            "--install-deps must run as root to install them; run as root:\n"
            "    %s\n"
            "or: sudo python3 configure.py --install-deps, then re-run configure as yourself"
            % (" ".join(missing), cmd))
    print("deps: installing %s" % " ".join(missing), flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for c in (["apt-get", "update"], ["apt-get", "install", "-y"] + missing):
        print("+ " + " ".join(c), flush=True)
        if subprocess.call(c, env=env) != 0:
            die("`%s` failed" % " ".join(c))
    still = [p for p in missing if not deb_installed(p)]
    if still:
        die("still not installed after apt-get: " + " ".join(still))


# --------------------------------------------------------------------------
# Toolchain probes
# --------------------------------------------------------------------------

class Prober:
    def __init__(self, cc):
        self.cc = cc
        self.tmp = tempfile.mkdtemp(prefix="kumo-configure-")
        self.n = 0

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def build(self, code, cflags=(), libs=(), link=True, execute=False, env=None):
        """Compiles (and links, and runs) `code`; returns (ok, output)."""
        self.n += 1
        src = os.path.join(self.tmp, "p%d.c" % self.n)
        out = os.path.join(self.tmp, "p%d%s" % (self.n, "" if link else ".o"))
        with open(src, "w") as f:
            f.write(code + "\n")
        cmd = (self.cc + ["-std=gnu11", "-D_GNU_SOURCE", "-pthread",
                          "-Werror=implicit-function-declaration"]
               + list(cflags) + ([] if link else ["-c"]) + [src, "-o", out] + list(libs))
        try:
            r = run(cmd)
        except OSError as e:
            return False, str(e)
        if r.returncode != 0 or not execute:
            return r.returncode == 0, r.stdout
        try:
            r = run([out], timeout=30, env=env)
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, str(e)
        return r.returncode == 0, r.stdout

    def flag_ok(self, flags):
        ok, _ = self.build("int main(void) { return 0; }", cflags=["-Werror"] + flags,
                           link=False)
        return ok


def pkg_config(args):
    try:
        r = subprocess.run(["pkg-config"] + args, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True)
    except OSError:
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def detect(prober, dep, have_pkg_config):
    if not dep.needed:
        dep.how = "not used"
        return
    if have_pkg_config and pkg_config(["--exists", dep.pc]) is not None:
        dep.cflags = shlex.split(pkg_config(["--cflags", dep.pc]) or "")
        dep.libs = shlex.split(pkg_config(["--libs", dep.pc]) or "")
        dep.found = True
        dep.how = "pkg-config %s" % (pkg_config(["--modversion", dep.pc]) or "?")
        return
    if dep.code is None:  # criterion brings its own main()
        code = "#include <%s>\nTest(configure, probe) {}\n" % dep.header
    else:
        code = "#include <%s>\nint main(void) { %s }\n" % (dep.header, dep.code)
    ok, _ = prober.build(code, libs=dep.fallback_libs)
    if ok:
        dep.libs = list(dep.fallback_libs)
        dep.found = True
        dep.how = "probe (no %s.pc)" % dep.pc


# --------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------

def visible(name):
    return not name.startswith(".") and name != "__pycache__"


def glob_c(top, recursive):
    """Sorted .c files under `top` (relative paths) and the folders read."""
    files, dirs = [], []
    if not os.path.isdir(os.path.join(ROOT, top)):
        return files, dirs
    for d, subdirs, names in os.walk(os.path.join(ROOT, top)):
        subdirs[:] = sorted(s for s in subdirs if visible(s)) if recursive else []
        rel = os.path.relpath(d, ROOT)
        dirs.append(rel)
        files += [os.path.join(rel, n) for n in sorted(names)
                  if n.endswith(".c") and visible(n)
                  and os.path.isfile(os.path.join(d, n))]
    return sorted(files), dirs


def kumo_version():
    """KUMO_VERSION_MAJOR/MINOR/PATCH from include/kumo/*.h, if defined there."""
    parts = {}
    inc = os.path.join(ROOT, "include", "kumo")
    if os.path.isdir(inc):
        for name in sorted(os.listdir(inc)):
            if not name.endswith(".h"):
                continue
            with open(os.path.join(inc, name), errors="replace") as f:
                for line in f:
                    w = line.split()
                    if (len(w) >= 3 and w[0] == "#define"
                            and w[1] in ("KUMO_VERSION_MAJOR", "KUMO_VERSION_MINOR",
                                         "KUMO_VERSION_PATCH")
                            and w[2].isdigit()):
                        parts[w[1]] = w[2]
    if len(parts) == 3:
        return "%s.%s.%s" % (parts["KUMO_VERSION_MAJOR"], parts["KUMO_VERSION_MINOR"],
                             parts["KUMO_VERSION_PATCH"])
    return DEFAULT_VERSION


# --------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------

def write_if_changed(path, text):
    """Keeps the mtime of an unchanged file: a re-run of configure that
    produces the same config.h must not rebuild every object."""
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except OSError:
        pass
    with open(path, "w") as f:
        f.write(text)
    return True


def esc(path):
    """A path as a ninja build-line token."""
    return path.replace("$", "$$").replace(" ", "$ ").replace(":", "$:")


def esc_var(text):
    """Text as a ninja variable value (spaces are fine there)."""
    return text.replace("$", "$$")


def sh(args):
    return " ".join(shlex.quote(a) for a in args)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(
        description="Configure Kumo and write build.ninja (then run ninja).")
    ap.add_argument("--mode", choices=["release", "debug"], default="release",
                    help="release: -O2; debug: -O0 and KUMO_DEBUG 1 (default: release)")
    ap.add_argument("--sanitize", default="",
                    help="address,undefined | undefined | thread[,undefined]: a sanitizer "
                         "build, in its own directory (build/asan, build/tsan, ...)")
    ap.add_argument("--prefix", default="/usr/local",
                    help="install prefix for `ninja install` and kumo.pc (default /usr/local)")
    ap.add_argument("--cc", default=os.environ.get("CC") or "gcc",
                    help="C compiler (default: $CC, else gcc)")
    ap.add_argument("--install-deps", action="store_true",
                    help="apt-get install the missing Debian packages first (as root): "
                         + " ".join(APT_PACKAGES))
    a = ap.parse_args()

    san = [s for s in a.sanitize.replace(" ", "").split(",") if s]
    bad = [s for s in san if s not in ("address", "undefined", "thread")]
    if bad:
        ap.error("--sanitize: unknown sanitizer %s (use address,undefined or thread)"
                 % ",".join(bad))
    if "address" in san and "thread" in san:
        ap.error("--sanitize: address and thread cannot be combined; configure one, "
                 "then the other")
    a.sanitizers = sorted(set(san), key=["address", "undefined", "thread"].index)
    if not a.prefix.startswith("/"):
        ap.error("--prefix must be an absolute path")
    a.prefix = a.prefix.rstrip("/") or "/"
    return a


# libFuzzer targets (fuzz/*.c), each over the pure decoders it names:
# built with clang (Debian package clang) when it is installed, whatever
# the mode's compiler; `ninja fuzz` builds them, and each runs as
# `build/<mode>/fuzz/<name> -max_total_time=SECONDS`.
FUZZ_SOURCES = ["proc/dist/wire.c", "transport/address.c"]


def write_fuzz(w, bdir):
    srcs = sorted(glob.glob(os.path.join("fuzz", "*.c")))
    clang = shutil.which("clang")
    if not clang or not srcs:
        w("rule fuzz_missing")
        w("  command = echo 'fuzz: clang not found (Debian package clang), skipping'")
        w("  description = FUZZ")
        w("build fuzz: fuzz_missing")
        w("")
        return
    w("rule fuzz_link")
    w("  command = %s -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined "
      "-fno-sanitize-recover=undefined -D_GNU_SOURCE -Iinclude -I. -I%s -MD -MF $out.d "
      "$in -o $out" % (clang, bdir))
    w("  depfile = $out.d")
    w("  deps = gcc")
    w("  description = FUZZ $out")
    outs = []
    for src in srcs:
        out = "%s/fuzz/%s" % (bdir, os.path.basename(src)[:-2])
        w("build %s: fuzz_link %s %s" % (esc(out), esc(src), " ".join(esc(x) for x in FUZZ_SOURCES)))
        outs.append(out)
    w("build fuzz: phony %s" % " ".join(esc(x) for x in outs))
    w("")


def main():
    os.chdir(ROOT)
    a = parse_args()
    if a.install_deps:
        install_deps()

    cc = shlex.split(a.cc)
    if not cc:
        die("--cc is empty")
    if not shutil.which(cc[0]):
        die("C compiler `%s` not found (Debian package: gcc; or pass --cc=...)" % cc[0])

    sanitize = bool(a.sanitizers)
    debug = a.mode == "debug"
    use_jemalloc = not sanitize  # sanitizers replace malloc
    if "address" in a.sanitizers:
        dirname = "asan"
    elif "thread" in a.sanitizers:
        dirname = "tsan"
    elif sanitize:
        dirname = "ubsan"
    else:
        dirname = a.mode
    if sanitize and debug:
        dirname += "-debug"
    bdir = "build/" + dirname

    prober = Prober(cc)
    try:
        ok, out = prober.build("int main(void) { return 0; }")
        if not ok:
            die("C compiler `%s` cannot build a trivial program:\n%s" % (a.cc, out))
        cc_version = run(cc + ["--version"]).stdout.splitlines()[0:1] or ["?"]

        # Dependencies.
        have_pc = shutil.which("pkg-config") is not None
        deps = dependencies(use_jemalloc)
        for d in deps:
            detect(prober, d, have_pc)
        missing = [d for d in deps if d.needed and not d.found and not d.optional]
        if missing:
            die("missing dependencies:\n"
                + "".join("  %-10s (Debian package: %s)\n" % (d.key, d.deb) for d in missing)
                + "install them with:  apt-get install %s\n"
                  "or let configure do it (as root):  python3 configure.py --install-deps"
                % " ".join(d.deb for d in missing))
        by_key = {d.key: d for d in deps}
        lib_deps = [d for d in deps if d.key != "criterion" and d.needed and not d.optional]

        # Flags.
        opt = []
        if sanitize:
            opt = ["-O1", "-fno-omit-frame-pointer", "-fsanitize=" + ",".join(a.sanitizers)]
            if "undefined" in a.sanitizers:
                # Make UB fatal inside the test that hits it, whatever UBSAN_OPTIONS says:
                # a report that lets the test pass would be a silent pass.
                opt.append("-fno-sanitize-recover=undefined")
        elif debug:
            opt = ["-O0"]
        else:
            opt = ["-O2"]
            if platform.machine() in ("x86_64", "AMD64") and prober.flag_ok(["-march=x86-64-v2"]):
                opt.append("-march=x86-64-v2")
            # Link-time optimisation: the per-message path crosses files
            # (api.c -> node.c -> engine), and inlining across them is worth
            # 12-18% per hop here.  Fat objects keep libkumo.a usable by a
            # non-LTO link.
            lto = ["-flto=auto", "-ffat-lto-objects"]
            if prober.flag_ok(lto) and shutil.which(os.path.basename(a.cc) + "-ar"):
                opt += lto
        san_ld = [f for f in opt if f.startswith("-fsanitize") or f.startswith("-fno-sanitize")
                  or f.startswith("-flto")]

        if sanitize:
            ok, out = prober.build("#include <stdlib.h>\nint main(void) { "
                                   "volatile char *p = malloc(4); p[0] = 1; free((void *)p); "
                                   "return 0; }", cflags=opt, execute=True)
            if not ok:
                hint = ""
                if "cannot find" in out or "No such file" in out:
                    hint = ("\n(the sanitizer runtime is missing: with gcc it comes with the "
                            "gcc package; with clang-14 install libclang-rt-14-dev)")
                elif "mapping" in out or "Shadow" in out:
                    hint = ("\n(the kernel's ASLR entropy is too high for this sanitizer "
                            "runtime: try `sysctl vm.mmap_rnd_bits=28`)")
                die("%s cannot build and run a program with %s:\n%s%s"
                    % (a.cc, " ".join(opt), out.strip()[-1500:], hint))

        dep_cflags = []
        for d in lib_deps + [by_key["criterion"]]:
            for f in d.cflags:
                if f not in dep_cflags and f not in ("-pthread", "-D_GNU_SOURCE"):
                    dep_cflags.append(f)
        cflags = (["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-g", "-fPIC",
                   "-fvisibility=hidden", "-pthread", "-D_GNU_SOURCE", "-Iinclude", "-I.",
                   "-I" + bdir] + opt + dep_cflags)
        ldflags = ["-pthread"] + san_ld
        libs = []
        for d in lib_deps:
            for f in d.libs:
                if f not in libs:
                    libs.append(f)
        libs += ["-lpthread", "-lm"]
        crit_libs = by_key["criterion"].libs

        # config.h
        probe_results = []
        for macro, need, code in PROBES:
            pc = [f for k in need for f in by_key[k].cflags]
            pl = [f for k in need for f in by_key[k].libs]
            ok, _ = prober.build(code, cflags=pc, libs=pl)
            probe_results.append((macro, ok))
    finally:
        prober.close()

    os.makedirs(bdir, exist_ok=True)
    defines = [
        ("KUMO_DEBUG", debug, "debug build: extra checks, smaller limits"),
        ("KUMO_SANITIZE", sanitize, "built with a sanitizer (malloc is the sanitizer's)"),
        ("KUMO_SANITIZE_ADDRESS", "address" in a.sanitizers, "AddressSanitizer + LeakSanitizer"),
        ("KUMO_SANITIZE_UNDEFINED", "undefined" in a.sanitizers, "UBSan"),
        ("KUMO_SANITIZE_THREAD", "thread" in a.sanitizers, "ThreadSanitizer (no LeakSanitizer)"),
        ("KUMO_USE_JEMALLOC", use_jemalloc, "engine memory from jemalloc's sized API"),
    ]
    lines = [
        "/* Generated by configure.py for %s: do not edit, re-run configure.py. */" % bdir,
        "/*",
        " * Every macro is 0 or 1: test with #if, not #ifdef.  KUMO_HAVE_* say what",
        " * the headers and libraries we compile against offer; whether the running",
        " * kernel supports the feature is probed at start-up (docs/architecture.md §6).",
        " */",
        "#ifndef KUMO_CONFIG_H",
        "#define KUMO_CONFIG_H",
        "",
    ]
    width = max(len(m) for m, _ in probe_results + [(d[0], 0) for d in defines])
    for name, val, why in defines:
        lines.append("#define %-*s %d /* %s */" % (width, name, int(bool(val)), why))
    lines.append("")
    for macro, ok in probe_results:
        lines.append("#define %-*s %d" % (width, macro, int(ok)))
    lines += ["", "#endif", ""]
    write_if_changed(os.path.join(bdir, "config.h"), "\n".join(lines))

    # kumo.pc
    version = kumo_version()
    requires = [d.pc for d in lib_deps if d.how.startswith("pkg-config")]
    private_libs = [f for d in lib_deps if not d.how.startswith("pkg-config") for f in d.libs]
    private_libs += ["-lpthread", "-lm"]
    pc = "\n".join([
        "prefix=%s" % a.prefix,
        "exec_prefix=${prefix}",
        "libdir=${exec_prefix}/lib",
        "includedir=${prefix}/include",
        "",
        "Name: kumo",
        "Description: Erlang-style processes and messages for C, on io_uring",
        "Version: %s" % version,
        "Cflags: -I${includedir}",
        "Libs: -L${libdir} -lkumo",
        "Requires.private: %s" % " ".join(requires),
        "Libs.private: %s" % " ".join(private_libs),
        "",
    ])
    if not requires:
        pc = pc.replace("Requires.private: \n", "")
    write_if_changed(os.path.join(bdir, "kumo.pc"), pc)

    if not os.path.isfile(os.path.join(ROOT, "kumo.map")):
        die("kumo.map (the shared library's version script) is missing")

    # Sources.
    watched = []
    lib_srcs = []
    for top in LIB_DIRS:
        files, dirs = glob_c(top, recursive=True)
        lib_srcs += files
        watched += dirs
    programs = {}
    skipped = []                # (program source, missing optional Dep)
    for top in PROGRAM_DIRS:
        files, dirs = glob_c(top, recursive=False)
        watched += dirs
        helpers = [f for f in files if os.path.basename(f).startswith("_")]
        mains = [f for f in files if not os.path.basename(f).startswith("_")]
        for f in [f for f in mains if f in PROGRAM_DEPS]:
            d = by_key[PROGRAM_DEPS[f]]
            if not d.found:
                mains.remove(f)
                skipped.append((f, d))
        programs[top] = (helpers, mains)
    absent = [d for d in LIB_DIRS + PROGRAM_DIRS if not os.path.isdir(d)]
    if absent:
        # A folder that does not exist yet has no mtime to depend on; its
        # creation changes the top folder's, so depend on that meanwhile.
        watched.append(".")
    if not lib_srcs:
        stub = os.path.join(bdir, "empty.c")
        write_if_changed(stub, "/* Generated: no library sources were found. */\n"
                               "typedef int kumo__empty_translation_unit;\n")
        lib_srcs = [stub]
        warn("no library sources under %s" % ", ".join(LIB_DIRS))

    regen_args = ["--mode=" + a.mode, "--prefix=" + a.prefix, "--cc=" + a.cc]
    if sanitize:
        regen_args.append("--sanitize=" + ",".join(a.sanitizers))
    configure_cmd = "python3 configure.py " + sh(regen_args)

    def obj(src):
        rel = os.path.relpath(src, bdir) if src.startswith(bdir + "/") else src
        return "%s/obj/%s.o" % (bdir, rel[:-2])

    n = []
    w = n.append
    w("# Generated by: %s" % configure_cmd)
    w("# Do not edit: edit configure.py. Re-run happens automatically when configure.py")
    w("# or a globbed source folder changes.")
    w("ninja_required_version = 1.10")
    w("builddir = %s" % bdir)
    w("")
    w("cc = %s" % esc_var(a.cc))
    w("cflags = %s" % esc_var(sh(cflags)))
    w("ldflags = %s" % esc_var(sh(ldflags)))
    w("libs = %s" % esc_var(sh(libs)))
    w("test_libs = %s" % esc_var(sh(crit_libs)))
    w("")
    w("rule cc")
    w("  command = $cc -MMD -MF $out.d $cflags -c $in -o $out")
    w("  depfile = $out.d")
    w("  deps = gcc")
    w("  description = CC $in")
    w("rule ar")
    # gcc-ar loads the LTO plugin so the archive indexes LTO objects.
    ar = "ar"
    if "-flto=auto" in cflags and shutil.which(os.path.basename(a.cc) + "-ar"):
        ar = os.path.basename(a.cc) + "-ar"
    w("  command = rm -f $out && %s crs $out $in" % ar)
    w("  description = AR $out")
    solink_extra = "" if sanitize else " -Wl,-z,defs"
    w("rule solink")
    w("  command = $cc -shared $ldflags -Wl,-soname,%s -Wl,--version-script=kumo.map%s "
      "-o $out $in $libs" % (SONAME, solink_extra))
    w("  description = SO $out")
    w("rule link")
    w("  command = $cc $ldflags -o $out $in $libs $extra_libs")
    w("  description = LINK $out")
    w("rule regen")
    w("  command = %s" % esc_var(configure_cmd))
    w("  description = CONFIGURE (configure.py or a source folder changed)")
    w("  generator = 1")
    w("  pool = console")
    w("rule run_tests")
    w("  command = python3 tools/run_tests.py --jobs 2 --timeout 120 $in")
    w("  description = TEST")
    w("  pool = console")
    w("rule run_perf")
    w("  command = if [ ! -f perf/run ]; then echo 'perf: perf/run does not exist yet' >&2; "
      "exit 1; fi; python3 perf/run --build %s" % bdir)
    w("  description = PERF")
    w("  pool = console")
    dest = '"$${DESTDIR:-}"%s' % shlex.quote(a.prefix if a.prefix != "/" else "")
    install_cmd = " && ".join([
        "set -e",
        "d=%s" % dest,
        'install -d "$$d/lib/pkgconfig" "$$d/include/kumo"',
        'install -m 644 %s/libkumo.a "$$d/lib/libkumo.a"' % bdir,
        'install -m 755 %s/libkumo.so "$$d/lib/%s"' % (bdir, SONAME),
        'ln -sfn %s "$$d/lib/libkumo.so"' % SONAME,
        "for h in $$(cd include/kumo && find . -name '*.h' | sort); do "
        'install -D -m 644 "include/kumo/$$h" "$$d/include/kumo/$$h"; done',
        'install -m 644 %s/kumo.pc "$$d/lib/pkgconfig/kumo.pc"' % bdir,
        'echo "installed libkumo.a, libkumo.so, include/kumo/, kumo.pc under $$d"',
    ])
    w("rule install")
    w("  command = %s" % install_cmd)
    w("  description = INSTALL")
    w("  pool = console")
    w("rule format_check")
    w("  command = if ! command -v clang-format >/dev/null 2>&1; then "
      "echo 'format-check: clang-format not found (Debian package clang-format), skipping'; "
      "exit 0; fi; "
      "for d in %s; do [ -d $$d ] && find $$d -type f \\( -name '*.c' -o -name '*.h' \\) "
      "-print0; done | xargs -0 -r clang-format --dry-run --Werror && "
      "echo 'format-check: ok'" % " ".join(FORMAT_DIRS))
    w("  description = FORMAT-CHECK")
    w("  pool = console")
    w("")

    # Library. Every compile waits for config.h (order-only): after a deleted
    # build folder there are no depfiles yet to say who includes it.
    config_h = bdir + "/config.h"
    lib_objs = []
    for s in lib_srcs:
        o = obj(s)
        lib_objs.append(o)
        w("build %s: cc %s || %s" % (esc(o), esc(s), esc(config_h)))
    liba = "%s/libkumo.a" % bdir
    libso = "%s/libkumo.so" % bdir
    pcfile = "%s/kumo.pc" % bdir
    w("build %s: ar %s" % (esc(liba), " ".join(esc(o) for o in lib_objs)))
    w("build %s: solink %s | kumo.map" % (esc(libso), " ".join(esc(o) for o in lib_objs)))
    w("build lib: phony %s %s %s" % (esc(liba), esc(libso), esc(pcfile)))
    w("")

    # Programs: one per non-helper file, helpers linked into each.
    outputs = {}
    for top in PROGRAM_DIRS:
        helpers, mains = programs[top]
        helper_objs = []
        for s in helpers:
            o = obj(s)
            helper_objs.append(o)
            w("build %s: cc %s || %s" % (esc(o), esc(s), esc(config_h)))
        outs = []
        for s in mains:
            o = obj(s)
            exe = "%s/%s/%s" % (bdir, top, os.path.basename(s)[:-2])
            dep = by_key[PROGRAM_DEPS[s]] if s in PROGRAM_DEPS else None
            w("build %s: cc %s || %s" % (esc(o), esc(s), esc(config_h)))
            if dep and dep.cflags:
                w("  cflags = $cflags %s" % esc_var(sh(dep.cflags)))
            w("build %s: link %s %s %s" % (esc(exe), esc(o), " ".join(esc(h) for h in helper_objs),
                                          esc(liba)))
            if top == "tests":
                w("  extra_libs = $test_libs")
            elif dep:
                w("  extra_libs = %s" % esc_var(sh(dep.libs)))
            outs.append(exe)
        outputs[top] = outs
        w("build %s-bin: phony %s" % (top, " ".join(esc(x) for x in outs)))
        w("")

    everything = [liba, libso, pcfile] + outputs["tests"] + outputs["perf"] + outputs["examples"]
    # `test` and `perf` name files that are never written, so they always run.
    # `ninja test` builds everything first: CI's one command also proves that
    # the examples and benchmarks still compile.
    w("build test: run_tests %s | tools/run_tests.py || %s" % (
        " ".join(esc(x) for x in outputs["tests"]), " ".join(esc(x) for x in everything)))
    w("build perf: run_perf | %s %s" % (" ".join(esc(x) for x in outputs["perf"]), esc(liba)))
    w("build install: install | %s %s %s" % (esc(liba), esc(libso), esc(pcfile)))
    w("build format-check: format_check")
    w("")
    write_fuzz(w, bdir)
    # config.h and kumo.pc are configure's outputs too, but only rebuilt when
    # missing (a deleted build folder): they are rewritten only when their
    # content changes, so their mtimes must not make build.ninja look stale.
    generated = [bdir + "/config.h", pcfile] + [s for s in lib_srcs if s.startswith(bdir + "/")]
    w("build %s: regen" % " ".join(esc(g) for g in generated))
    # The folders are named by absolute path: ninja would take `perf` for
    # the `perf` target. The phony edges make a folder that disappears (or a
    # tree that moved) re-run configure instead of stopping ninja with
    # "missing and no known rule".
    watched_abs = [os.path.normpath(os.path.join(ROOT, d)) for d in watched]
    for d in watched_abs:
        w("build %s: phony" % esc(d))
    w("build build.ninja: regen configure.py | %s" % " ".join(esc(d) for d in watched_abs))
    w("")
    w("default %s" % " ".join(esc(x) for x in everything))
    w("")
    with open("build.ninja", "w") as f:
        f.write("\n".join(n))
    # build.ninja must not look older than a folder it depends on (writing it
    # can itself bump the top folder's mtime when it is first created).
    newest = max([time.time()] + [os.stat(d).st_mtime for d in watched + ["configure.py"]])
    os.utime("build.ninja", (newest, newest))
    # ninja also compares the mtime its log recorded for build.ninja when it
    # last ran configure itself with the inputs, so a hand-run configure after
    # a folder changed is followed by one more (harmless) run on the next
    # `ninja` (ninja-build/ninja#1718; the `ninja -t restat build.ninja` cure
    # ignores `builddir`, ninja-build/ninja#2730, and the logs stay out of the
    # top folder, which may be watched).

    # Summary.
    print("kumo configured: mode=%s%s -> %s" % (
        a.mode, " sanitize=" + ",".join(a.sanitizers) if sanitize else "", bdir))
    print("  cc        %s" % cc_version[0])
    print("  flags     %s" % " ".join(opt))
    for d in deps:
        print("  %-9s %s" % (d.key, d.how if d.found or not d.needed else
                             "not found (Debian package: %s)" % d.deb if d.optional else
                             "MISSING"))
    print("  config.h  %s" % ", ".join("%s=%d" % (m.replace("KUMO_HAVE_", ""), ok)
                                       for m, ok in probe_results))
    print("  sources   %d library, %d tests, %d perf, %d examples" % (
        len([s for s in lib_srcs if not s.startswith(bdir)]), len(outputs["tests"]),
        len(outputs["perf"]), len(outputs["examples"])))
    print("  prefix    %s" % a.prefix)
    for src, d in skipped:
        warn("%s not found (Debian package: %s): %s is not built"
             % (d.key, d.deb, src))
    if "thread" in a.sanitizers:
        warn("Criterion 2.4.1 test binaries abort at start-up under ThreadSanitizer (\"Could "
             "not initialize inheritable arena\", Snaipe/Criterion#274): `ninja test` fails "
             "here; run the perf and example programs of %s instead" % bdir)
    if not shutil.which("ninja"):
        warn("ninja not found (Debian package: ninja-build)")
    print("next: ninja   |   ninja test   |   ninja perf   |   ninja install")


if __name__ == "__main__":
    main()
