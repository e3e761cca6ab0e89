"""check-arm's reading of an image's entrypoint through its layers: real tar layers (gzip, zstd,
plain) written here, opened through an opener that counts what it fetches, and the ELF machine
of what the entrypoint execs."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import tarfile
import threading
from collections import Counter
from pathlib import Path

import pytest
import zstandard

from provision.armcheck import layers
from provision.armcheck.layers import (
    Layer,
    LayerCache,
    LayerError,
    elf_machine,
    entrypoint,
)

X86_64 = Path("/bin/true").read_bytes()[:4096]  # a real x86-64 executable of this machine


def elf_header(machine: int, bits: int = 64, little: bool = True) -> bytes:
    """A valid ELF executable header (ELF64: 64 bytes, ELF32: 52) for `machine`."""
    order = "<" if little else ">"
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1 if little else 2, 1, 0]) + bytes(8)
    if bits == 64:  # e_type e_machine e_version e_entry e_phoff e_shoff e_flags + sizes
        rest = struct.pack(order + "HHIQQQIHHHHHH", 2, machine, 1, 0x400000, 64, 0, 0,
                           64, 56, 0, 64, 0, 0)
    else:
        rest = struct.pack(order + "HHIIIIIHHHHHH", 2, machine, 1, 0x8000, 52, 0, 0,
                           52, 32, 0, 40, 0, 0)
    return ident + rest


AARCH64 = elf_header(183) + b"\0" * 200


# --- building layers --------------------------------------------------------------------------

def file(path, content, mode=0o755):
    return ("file", path, content, mode)


def link(path, target):
    return ("symlink", path, target)


def hardlink(path, target):
    return ("hardlink", path, target)


def directory(path):
    return ("dir", path)


def whiteout(path):
    parent, _, name = path.rpartition("/")
    return ("file", f"{parent}/.wh.{name}", b"", 0o644)


def opaque(path):
    return ("file", f"{path}/.wh..wh..opq", b"", 0o644)


def tar_bytes(members, prefix="") -> bytes:
    """A tar of `members`, each name written as `prefix` + the path without its leading /."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, path, *rest in members:
            info = tarfile.TarInfo(prefix + path.lstrip("/"))
            data = None
            if kind == "file":
                data, info.mode, info.size = rest[0], rest[1], len(rest[0])
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, rest[0]
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, prefix + rest[0].lstrip("/")
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


MEDIA = {"gzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
         "tar": "application/vnd.oci.image.layer.v1.tar"}


class Registry:
    """Layer blobs written to tmp_path, and an opener over them that counts each fetch."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, Path] = {}
        self.opens: Counter[str] = Counter()

    def blob(self, data: bytes, media_type: str, digest: str | None = None) -> Layer:
        digest = digest or "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.root / f"blob-{len(self.files)}"
        path.write_bytes(data)
        self.files[digest] = path
        return Layer(digest, media_type, len(data))

    def layer(self, members, compression="gzip", prefix="./") -> Layer:
        data = tar_bytes(members, prefix)
        if compression == "gzip":
            data = gzip.compress(data)
        elif compression == "zstd":  # two frames, as zstd:chunked writes them
            half = len(data) // 2
            compressor = zstandard.ZstdCompressor()
            data = compressor.compress(data[:half]) + compressor.compress(data[half:])
        return self.blob(data, MEDIA[compression])

    def __call__(self, layer: Layer):
        self.opens[layer.digest] += 1
        return Streamed(open(self.files[layer.digest], "rb"))


class Streamed:
    """A blob as an HTTP response body gives it: read() only, no seeking back."""

    def __init__(self, blob) -> None:
        self._blob = blob

    def read(self, size: int = -1) -> bytes:
        return self._blob.read(size)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._blob.close()


@pytest.fixture
def registry(tmp_path):
    return Registry(tmp_path)


def config(entrypoint=None, cmd=None, env=None, workdir=None) -> dict:
    settings: dict = {"Entrypoint": entrypoint, "Cmd": cmd}
    if env is not None:
        settings["Env"] = env
    if workdir is not None:
        settings["WorkingDir"] = workdir
    return {"architecture": "arm64", "os": "linux", "config": settings}


def check(registry, image_layers, **settings):
    return entrypoint(config(**settings), image_layers, registry, LayerCache())


# --- ELF headers ------------------------------------------------------------------------------

def test_the_elf_machine_of_a_real_x86_64_binary():
    assert elf_machine(X86_64[:128]) == ("x86-64", "amd64")


@pytest.mark.parametrize("header, expected", [
    (elf_header(183), ("AArch64", "arm64")),
    (elf_header(40, bits=32), ("ARM", "arm")),
    (elf_header(3, bits=32), ("i386", "386")),
    (elf_header(21, little=True), ("PowerPC64 little-endian", "ppc64le")),
    (elf_header(21, little=False), ("PowerPC64", "ppc64")),
    (elf_header(22, little=False), ("IBM S/390", "s390x")),
    (elf_header(243), ("RISC-V", "riscv64")),
    (elf_header(62, little=False), ("x86-64", "amd64")),
    (elf_header(0x1234), ("machine 4660", None)),
    (elf_header(0x1234, little=False), ("machine 4660", None)),
])
def test_the_elf_machine_is_read_with_the_files_own_byte_order(header, expected):
    assert elf_machine(header) == expected


@pytest.mark.parametrize("head", [b"", b"#!/bin/sh\n", b"\x7fELF\x02\x01", b"MZ" + bytes(62),
                                  b"\x7fELF\x05\x01" + bytes(58)])
def test_what_is_not_an_elf_header(head):
    assert elf_machine(head) is None


# --- finding the entrypoint -------------------------------------------------------------------

def test_an_entrypoint_in_the_top_layer_of_three_reads_only_the_top_layer(registry):
    base = registry.layer([file("/app/server", X86_64)])
    middle = registry.layer([file("/etc/motd", b"hi\n", 0o644)])
    top = registry.layer([directory("/app"), file("/app/server", AARCH64)])
    cache = LayerCache()
    found = entrypoint(config(entrypoint=["/app/server"], cmd=["--port", "80"]),
                       [base, middle, top], registry, cache)
    assert found.problem is None and found.argv0 == "/app/server"
    assert found.binary == layers.Binary("/app/server", "AArch64", "arm64", ())
    assert cache.reads == 1 and list(registry.opens) == [top.digest]


def test_a_lower_layer_is_read_when_the_upper_ones_do_not_hold_the_path(registry):
    base = registry.layer([file("/app/server", X86_64)])
    top = registry.layer([file("/etc/motd", b"hi\n", 0o644)])
    found = check(registry, [base, top], entrypoint=["/app/server"])
    assert found.binary and (found.binary.machine, found.binary.arch) == ("x86-64", "amd64")
    assert set(registry.opens) == {base.digest, top.digest}


def test_argv0_is_the_first_of_entrypoint_then_cmd(registry):
    image = [registry.layer([file("/bin/a", AARCH64), file("/bin/b", X86_64)])]
    assert check(registry, image, entrypoint=["/bin/a"], cmd=["/bin/b"]).binary.path == "/bin/a"
    only_cmd = check(registry, image, entrypoint=[], cmd=["/bin/b", "-x"])
    assert only_cmd.argv0 == "/bin/b" and only_cmd.binary.arch == "amd64"


def test_an_image_without_entrypoint_or_command(registry):
    image = [registry.layer([file("/bin/a", AARCH64)])]
    found = check(registry, image)
    assert found == layers.Entrypoint("", None, "the image sets no entrypoint or command")
    assert entrypoint({"config": None}, image, registry, LayerCache()).problem
    assert registry.opens == {}


def test_a_missing_entrypoint_is_a_problem_named_by_its_path(registry):
    image = [registry.layer([file("/bin/a", AARCH64)])]
    found = check(registry, image, entrypoint=["/app/server"])
    assert found.binary is None
    assert found.problem == "/app/server is not in the image"


def test_a_bare_name_is_looked_up_on_the_configs_path_in_order(registry):
    image = [registry.layer([
        file("/opt/one/tool", b"just data", 0o644),   # not executable: skipped
        file("/opt/two/tool", AARCH64),
        file("/opt/three/tool", X86_64),
    ])]
    env = ["HOME=/root", "PATH=/opt/one:/opt/two:/opt/three"]
    found = check(registry, image, cmd=["tool"], env=env)
    assert found.binary.path == "/opt/two/tool" and found.binary.arch == "arm64"
    assert found.binary.via == ("tool -> /opt/two/tool (PATH)",)
    later = check(registry, image, cmd=["tool"], env=["PATH=/opt/three:/opt/two"])
    assert later.binary.path == "/opt/three/tool"


def test_without_path_in_env_dockers_default_path_is_searched(registry):
    image = [registry.layer([file("/bin/app", X86_64), file("/usr/local/bin/app", AARCH64)])]
    found = check(registry, image, cmd=["app"], env=["LANG=C.UTF-8"])
    assert found.binary.path == "/usr/local/bin/app"
    missing = check(registry, image, cmd=["nginx"])
    assert missing.binary is None
    assert missing.problem.startswith("nginx is not an executable file in any directory")
    assert layers.DEFAULT_PATH in missing.problem


def test_a_relative_path_is_relative_to_the_working_dir(registry):
    image = [registry.layer([file("/srv/app/run", AARCH64), file("/bin/run", X86_64)])]
    found = check(registry, image, entrypoint=["./run"], workdir="/srv/app")
    assert found.binary.path == "/srv/app/run" and found.binary.arch == "arm64"
    assert found.binary.via == ("./run -> /srv/app/run (WorkingDir /srv/app)",)
    assert check(registry, image, entrypoint=["bin/run"]).binary.path == "/bin/run"


def test_member_names_with_and_without_a_leading_dot_slash_merge(registry):
    base = registry.layer([file("/usr/bin/app", X86_64), file("/usr/bin/other", X86_64)],
                          prefix="")
    top = registry.layer([file("/usr/bin/app", AARCH64)], prefix="./")
    found = check(registry, [base, top], entrypoint=["/usr/bin/app"])
    assert found.binary.arch == "arm64"
    reversed_prefixes = [registry.layer([file("/usr/bin/app", X86_64)], prefix="./"),
                         registry.layer([file("/usr/bin/app", AARCH64)], prefix="")]
    assert check(registry, reversed_prefixes, entrypoint=["/usr/bin/app"]).binary.arch == "arm64"


# --- whiteouts and opaque directories ---------------------------------------------------------

def test_a_whiteout_hides_the_lower_layers_file(registry):
    base = registry.layer([file("/app/server", X86_64)])
    top = registry.layer([directory("/app"), whiteout("/app/server")])
    found = check(registry, [base, top], entrypoint=["/app/server"])
    assert found.binary is None and found.problem == "/app/server is not in the image"


def test_a_whiteout_of_a_directory_hides_everything_under_it(registry):
    base = registry.layer([file("/opt/app/bin/server", X86_64)])
    top = registry.layer([whiteout("/opt/app")])
    found = check(registry, [base, top], entrypoint=["/opt/app/bin/server"])
    assert found.problem == "/opt/app/bin/server is not in the image"


def test_an_opaque_directory_hides_lower_content_but_shows_its_own(registry):
    base = registry.layer([file("/opt/app/old", X86_64), file("/opt/keep", X86_64)])
    top = registry.layer([directory("/opt/app"), opaque("/opt/app"),
                          file("/opt/app/new", AARCH64)])
    image = [base, top]
    assert check(registry, image, entrypoint=["/opt/app/old"]).binary is None
    assert check(registry, image, entrypoint=["/opt/app/new"]).binary.arch == "arm64"
    assert check(registry, image, entrypoint=["/opt/keep"]).binary.arch == "amd64"


def test_a_file_in_an_upper_layer_replaces_a_lower_directory(registry):
    base = registry.layer([file("/app/bin/server", X86_64)])
    top = registry.layer([file("/app/bin", b"not a directory any more", 0o755)])
    found = check(registry, [base, top], entrypoint=["/app/bin/server"])
    assert found.binary is None
    assert found.problem == "/app/bin/server is not in the image (/app/bin is not a directory)"


def test_a_middle_layers_file_hides_the_base_directory_an_upper_layer_recreates(registry):
    base = registry.layer([file("/app/bin/server", X86_64)])
    middle = registry.layer([file("/app/bin", b"a file", 0o644)])
    top = registry.layer([directory("/app/bin"), file("/app/bin/other", AARCH64)])
    found = check(registry, [base, middle, top], entrypoint=["/app/bin/server"])
    assert found.problem == "/app/bin/server is not in the image"


def test_a_middle_layers_whiteout_of_a_directory_hides_the_base_content(registry):
    base = registry.layer([file("/opt/app/bin/server", X86_64)])
    middle = registry.layer([whiteout("/opt/app")])
    top = registry.layer([directory("/opt/app/bin"), file("/opt/app/bin/other", AARCH64)])
    found = check(registry, [base, middle, top], entrypoint=["/opt/app/bin/server"])
    assert found.problem == "/opt/app/bin/server is not in the image"


# --- symlinks, hard links, scripts ------------------------------------------------------------

def test_debian_usrmerge_bin_sh_through_a_symlinked_directory(registry):
    base = registry.layer([
        directory("/usr/bin"), link("/bin", "usr/bin"),
        link("/usr/bin/sh", "dash"), file("/usr/bin/dash", X86_64),
    ])
    found = check(registry, [base], cmd=["/bin/sh", "-c", "echo"])
    assert found.binary == layers.Binary("/usr/bin/dash", "x86-64", "amd64",
                                         ("/bin/sh -> /usr/bin/dash",))


def test_a_busybox_symlink_farm_is_the_busybox_binary(registry):
    farm = [file("/bin/busybox", X86_64), link("/bin/sh", "busybox"),
            link("/usr/bin/env", "/bin/busybox"), link("/usr/sbin/httpd", "../../bin/busybox")]
    image = [registry.layer(farm)]
    for argv0 in ("sh", "/usr/bin/env", "httpd"):
        found = check(registry, image, cmd=[argv0])
        assert found.binary.path == "/bin/busybox", argv0
        assert found.binary.arch == "amd64"
    assert check(registry, image, cmd=["httpd"]).binary.via == (
        "httpd -> /usr/sbin/httpd (PATH)", "/usr/sbin/httpd -> /bin/busybox")


def test_a_symlink_in_an_upper_layer_over_a_lower_file(registry):
    base = registry.layer([file("/usr/bin/app", X86_64)])
    top = registry.layer([file("/opt/app-arm64", AARCH64), link("/usr/bin/app", "/opt/app-arm64")])
    found = check(registry, [base, top], entrypoint=["/usr/bin/app"])
    assert found.binary.path == "/opt/app-arm64" and found.binary.arch == "arm64"


def test_a_symlink_loop_is_a_problem_not_a_hang(registry):
    image = [registry.layer([link("/bin/a", "b"), link("/bin/b", "/bin/a")])]
    found = check(registry, image, entrypoint=["/bin/a"])
    assert found.binary is None
    assert "more than 40 symbolic links" in found.problem


def test_a_dangling_symlink_names_what_is_missing(registry):
    image = [registry.layer([link("/usr/local/bin/app", "/opt/app/bin/app")])]
    found = check(registry, image, entrypoint=["/usr/local/bin/app"])
    assert found.problem == ("/usr/local/bin/app is not in the image (its symbolic links lead "
                             "to /opt/app/bin/app, which is missing)")


def test_a_hard_link_reads_its_targets_content(registry):
    image = [registry.layer([file("/usr/bin/python3.11", AARCH64),
                             hardlink("/usr/bin/python3", "/usr/bin/python3.11")])]
    found = check(registry, image, entrypoint=["/usr/bin/python3"])
    assert found.binary.path == "/usr/bin/python3" and found.binary.arch == "arm64"


def test_a_script_is_its_interpreter_followed_through_symlinks(registry):
    image = [registry.layer([
        file("/bin/busybox", X86_64), link("/bin/sh", "/bin/busybox"),
        file("/entrypoint.sh", b"#!/bin/sh\nexec \"$@\"\n"),
    ])]
    found = check(registry, image, entrypoint=["/entrypoint.sh"], cmd=["nginx"])
    assert found.binary == layers.Binary(
        "/bin/busybox", "x86-64", "amd64",
        ("/entrypoint.sh: #!/bin/sh", "/bin/sh -> /bin/busybox"))


def test_a_script_run_through_env_is_the_program_env_finds_on_path(registry):
    """`#!/usr/bin/env python3`: an arm64 env in front of an x86-64 python3 is no arm64
    image; what counts is the program env runs."""
    image = [registry.layer([file("/usr/bin/env", AARCH64), file("/usr/bin/python3", X86_64),
                             file("/app/main.py", b"#!  /usr/bin/env python3 \nprint()\n")])]
    found = check(registry, image, entrypoint=["/app/main.py"])
    assert found.binary.path == "/usr/bin/python3" and found.binary.arch == "amd64"
    assert found.binary.via == ("/app/main.py: #!  /usr/bin/env python3",
                                "python3 -> /usr/bin/python3 (through env)")


@pytest.mark.parametrize("line", [b"#!/usr/bin/env -S python3 -u",
                                  b"#!/usr/bin/env LC_ALL=C python3"])
def test_env_options_and_assignments_are_not_the_program(registry, line):
    image = [registry.layer([file("/usr/bin/env", AARCH64), file("/usr/bin/python3", AARCH64),
                             file("/app/main.py", line + b"\nprint()\n")])]
    found = check(registry, image, entrypoint=["/app/main.py"])
    assert found.binary.path == "/usr/bin/python3"


def test_env_naming_a_program_the_image_lacks_says_so(registry):
    image = [registry.layer([file("/usr/bin/env", AARCH64),
                             file("/app/main.py", b"#!/usr/bin/env python3\n")])]
    found = check(registry, image, entrypoint=["/app/main.py"])
    assert found.binary is None
    assert found.problem.startswith("/app/main.py needs python3 (its #! line), but python3 is"
                                    " not an executable file in any directory of the image's PATH")


def test_a_script_whose_interpreter_is_missing(registry):
    image = [registry.layer([file("/entrypoint.sh", b"#!/bin/bash\necho\n")])]
    found = check(registry, image, entrypoint=["/entrypoint.sh"])
    assert found.binary is None
    assert found.problem == ("/entrypoint.sh needs /bin/bash (its #! line), but /bin/bash is "
                             "not in the image")


def test_a_script_with_windows_line_endings_says_so(registry):
    image = [registry.layer([file("/bin/sh", X86_64), file("/run.sh", b"#!/bin/sh\r\necho\r\n")])]
    found = check(registry, image, entrypoint=["/run.sh"])
    assert found.binary is None and "Windows line endings" in found.problem


def test_scripts_nested_deeper_than_the_kernel_allows(registry):
    scripts = [file(f"/s{n}", f"#!/s{n + 1}\n".encode()) for n in range(6)]
    image = [registry.layer([*scripts, file("/s6", X86_64)])]
    found = check(registry, image, entrypoint=["/s0"])
    assert found.binary is None and "more than 4 #! interpreters" in found.problem
    assert check(registry, image, entrypoint=["/s2"]).binary.path == "/s6"


def test_a_file_neither_elf_nor_script_has_no_machine(registry):
    image = [registry.layer([file("/app/start", b"MZ\x90\x00 a windows program")])]
    found = check(registry, image, entrypoint=["/app/start"])
    assert found.problem is None
    assert found.binary == layers.Binary("/app/start", None, None, ())


def test_a_directory_is_not_a_program(registry):
    image = [registry.layer([directory("/app")])]
    found = check(registry, image, entrypoint=["/app"])
    assert found.problem == "/app is a directory, not a program"


# --- compression, digests, bounds -------------------------------------------------------------

@pytest.mark.parametrize("compression", ["gzip", "zstd", "tar"])
def test_each_compression_is_read_streaming(registry, compression):
    filler = [file(f"/usr/share/doc/{n}", bytes(5000), 0o644) for n in range(40)]
    image = [registry.layer([*filler, file("/usr/bin/app", AARCH64)], compression)]
    assert image[0].media_type == MEDIA[compression]
    found = check(registry, image, entrypoint=["/usr/bin/app"])
    assert found.binary.arch == "arm64"


def test_a_digest_mismatch_is_a_layer_error(registry):
    data = gzip.compress(tar_bytes([file("/app", AARCH64)]))
    wrong = "sha256:" + hashlib.sha256(b"other bytes").hexdigest()
    layer = registry.blob(data, MEDIA["gzip"], digest=wrong)
    with pytest.raises(LayerError) as caught:
        check(registry, [layer], entrypoint=["/app"])
    assert str(caught.value).startswith(f"Layer {wrong} does not match its digest")
    assert hashlib.sha256(data).hexdigest() in str(caught.value)


def test_a_damaged_blob_is_a_digest_mismatch_not_a_gzip_error(registry):
    data = bytearray(gzip.compress(tar_bytes([file("/app", AARCH64)])))
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    data[30:40] = b"\xff" * 10
    layer = registry.blob(bytes(data), MEDIA["gzip"], digest=good)
    with pytest.raises(LayerError, match="does not match its digest"):
        check(registry, [layer], entrypoint=["/app"])


def test_a_blob_that_is_not_what_its_media_type_says(registry):
    layer = registry.blob(tar_bytes([file("/app", AARCH64)]), MEDIA["gzip"])  # plain tar
    with pytest.raises(LayerError, match=r"cannot be read as gzip tar"):
        check(registry, [layer], entrypoint=["/app"])


def test_a_foreign_layer_is_an_error_without_a_fetch(registry):
    layer = Layer("sha256:" + "ab" * 32,
                  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", 100)
    cache = LayerCache()
    with pytest.raises(LayerError, match="foreign"):
        entrypoint(config(entrypoint=["/app"]), [layer], registry, cache)
    assert cache.reads == 0 and registry.opens == {}


def test_a_foreign_layer_below_the_entrypoint_is_never_read(registry):
    foreign = Layer("sha256:" + "ab" * 32,
                    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", 100)
    top = registry.layer([file("/app", AARCH64)])
    assert check(registry, [foreign, top], entrypoint=["/app"]).binary.arch == "arm64"


def test_a_member_name_longer_than_4096_is_a_layer_error(registry):
    layer = registry.layer([file("/" + "d" * 5000, AARCH64)])
    with pytest.raises(LayerError, match="longer than 4096"):
        check(registry, [layer], entrypoint=["/app"])


def test_a_long_name_header_declaring_a_gigabyte_is_refused_before_it_is_read(registry):
    header = tarfile.TarInfo("././@LongLink")
    header.type, header.size = tarfile.GNUTYPE_LONGNAME, 1 << 30
    data = gzip.compress(header.tobuf(format=tarfile.GNU_FORMAT) + bytes(4096))
    with pytest.raises(LayerError, match="longer than 4096"):
        check(registry, [registry.blob(data, MEDIA["gzip"])], entrypoint=["/app"])


def test_too_many_members_is_a_layer_error(registry, monkeypatch):
    monkeypatch.setattr(layers, "MAX_MEMBERS", 50)  # the real bound is a million
    layer = registry.layer([file(f"/f{n}", b"", 0o644) for n in range(51)], "tar")
    with pytest.raises(LayerError, match="more than 50 members"):
        check(registry, [layer], entrypoint=["/app"])


# --- the cache --------------------------------------------------------------------------------

def test_two_images_on_one_base_read_the_base_once(registry):
    base = registry.layer([file("/bin/busybox", X86_64), link("/bin/sh", "busybox")])
    first = registry.layer([file("/app/one", b"#!/bin/sh\n")])
    second = registry.layer([file("/app/two", b"#!/bin/sh\n")])
    cache = LayerCache()
    one = entrypoint(config(entrypoint=["/app/one"]), [base, first], registry, cache)
    two = entrypoint(config(entrypoint=["/app/two"]), [base, second], registry, cache)
    assert one.binary.path == two.binary.path == "/bin/busybox"
    assert cache.reads == 3 and registry.opens[base.digest] == 1


def test_two_threads_needing_one_layer_read_it_once(registry):
    layer = registry.layer([file("/app", AARCH64)])
    both_asked = threading.Barrier(2)
    opened = threading.Event()

    def slow_open(wanted: Layer):
        opened.set()
        # Hold the first read open until the other thread has surely asked for the layer.
        threading.Event().wait(0.2)
        return registry(wanted)

    cache = LayerCache()
    results = []

    def look() -> None:
        both_asked.wait()
        results.append(entrypoint(config(entrypoint=["/app"]), [layer], slow_open, cache))

    threads = [threading.Thread(target=look) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert opened.is_set()
    assert [found.binary.arch for found in results] == ["arm64", "arm64"]
    assert cache.reads == 1 and registry.opens[layer.digest] == 1


def test_a_layer_error_is_remembered_not_fetched_again(registry):
    data = gzip.compress(tar_bytes([file("/app", AARCH64)]))
    layer = registry.blob(data, MEDIA["gzip"], digest="sha256:" + "00" * 32)
    cache = LayerCache()
    for _ in range(2):
        with pytest.raises(LayerError, match="does not match its digest"):
            entrypoint(config(entrypoint=["/app"]), [layer], registry, cache)
    assert cache.reads == 1 and registry.opens[layer.digest] == 1


def test_a_registry_sending_more_than_the_declared_size_is_cut_off(registry):
    """A registry (or a proxy) that keeps sending is stopped at the manifest's size, not read
    to its end."""
    sent = registry.layer([file("/app", AARCH64), file("/pad", bytes(300_000))])
    declared = Layer(sent.digest, sent.media_type, sent.size // 2)
    with pytest.raises(LayerError, match="more than the .* bytes its manifest declares"):
        check(registry, [declared], entrypoint=["/app"])


def test_a_decompression_bomb_is_refused(registry, monkeypatch):
    monkeypatch.setattr(layers, "MIN_UNPACKED", 1 << 20)
    bomb = registry.layer([file("/app", AARCH64), file("/zeros", bytes(8 << 20))])
    assert bomb.size < 100_000  # 8 MB of zeros compress to a few kilobytes
    with pytest.raises(LayerError, match="unpacks to more than"):
        check(registry, [bomb], entrypoint=["/app"])


def test_the_env_in_front_of_a_scripts_program_is_read_too(registry):
    """`#!/usr/bin/env tool`: the kernel execs env first, so an x86-64 env is found out even
    when tool is AArch64."""
    image = [registry.layer([file("/usr/bin/env", X86_64), file("/usr/bin/tool", AARCH64),
                             file("/app/run", b"#!/usr/bin/env -u HOME tool\n")])]
    found = check(registry, image, entrypoint=["/app/run"])
    assert found.binary.path == "/usr/bin/tool" and found.binary.arch == "arm64"
    [env] = found.binary.also
    assert env.path == "/usr/bin/env" and env.arch == "amd64"
