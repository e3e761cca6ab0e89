"""The program an image's entrypoint execs, found through its layer blobs, and its ELF machine.

An image labelled linux/arm64 can still hold x86-64 binaries; only the file the kernel would
exec tells. This module finds that file without pulling the image: it reads the image config
(Entrypoint, Cmd, Env PATH, WorkingDir), then looks the path up in the merged view of the
layers as overlayfs would show it (the topmost layer holding a path wins; whiteouts and opaque
directories hide lower layers), following symlinks, hard links and `#!` interpreters, and
reads the ELF header of what it lands on.

Layers are read top first, and a lower one only while the path is not settled by those above
it. Each layer blob is streamed once (gzip, zstd or plain tar) and kept as a small index (every
path's kind, mode, link target and first 128 bytes); its digest is verified as it streams;
nothing is unpacked to disk. A LayerCache shares the indexes between every image of a run, so
images built on one base read the base once.
"""

from __future__ import annotations

import gzip
import hashlib
import posixpath
import tarfile
import threading
import zlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import BinaryIO, cast

import zstandard

HEAD_SIZE = 128            # enough for an ELF header (64 bytes) and a `#!` line
MAX_NAME = 4096            # PATH_MAX: a longer member name is not a real file
MAX_MEMBERS = 1_000_000    # far above any real layer; bounds the index's memory
MAX_PAX_HEADER = 1 << 20   # extended headers hold a name and a few xattrs, never megabytes
MAX_SYMLINK_HOPS = 40      # as Linux (ELOOP)
MAX_UNDECLARED = 64 << 30   # a layer whose manifest declares no size, read this far at most
MIN_UNPACKED = 4 << 30      # a layer may always unpack to this many bytes...
UNPACK_RATIO = 100          # ...or this many times its compressed size, if more
MAX_INTERPRETERS = 4       # as Linux: a script's interpreter may be a script, four deep
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # docker's
CHUNK = 1 << 16

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass(frozen=True)
class Layer:
    digest: str        # sha256:...
    media_type: str    # as in the manifest: ...tar.gzip / tar+gzip, tar+zstd, plain tar
    size: int = 0


Opener = Callable[[Layer], AbstractContextManager[BinaryIO]]  # the blob's own (compressed) bytes


class LayerError(Exception):
    """A layer that cannot be read: unknown media type, bad compression, digest mismatch."""


@dataclass(frozen=True)
class Entry:
    """One path of one layer."""

    kind: str          # "file", "dir", "symlink", "hardlink" (whose target the layer lacks),
                       # "other" (device, fifo)
    mode: int = 0o755
    target: str = ""   # a symlink's target as written; a broken hard link's target path
    head: bytes = b""  # a regular file's first HEAD_SIZE bytes


DIRECTORY = Entry("dir")


@dataclass
class LayerIndex:
    """What one layer holds: its paths (absolute, normalized) and what it hides below it."""

    entries: dict[str, Entry] = field(default_factory=dict)
    whiteouts: set[str] = field(default_factory=set)   # paths of lower layers it deletes
    opaque: set[str] = field(default_factory=set)      # directories whose lower content it hides


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    index: LayerIndex | None = None
    error: str | None = None  # a LayerError's message: the same bytes fail the same way


class LayerCache:
    """Each layer's index, read at most once per digest across every image of a run, even
    when two threads need the same layer at once (the second waits for the first). Images
    built on one base share its layers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self.reads = 0  # how many layer blobs were actually fetched

    def index(self, layer: Layer, open_blob: Opener) -> LayerIndex:
        with self._lock:
            slot = self._slots.setdefault(layer.digest, _Slot())
        with slot.lock:
            if slot.index is not None:
                return slot.index
            if slot.error is not None:
                raise LayerError(slot.error)
            try:
                slot.index = read_layer(layer, open_blob, self._count_read)
            except LayerError as error:
                slot.error = str(error)
                raise
            # Any other failure (the registry went away) is not remembered: the next caller
            # tries again.
            return slot.index

    def _count_read(self) -> None:
        with self._lock:
            self.reads += 1


@dataclass(frozen=True)
class Binary:
    path: str                 # the file exec'd, resolved: "/usr/bin/busybox"
    machine: str | None       # the ELF machine in words; None: not an ELF file
    arch: str | None          # docker's name for it; None when unknown or not ELF
    via: tuple[str, ...]      # how it was reached, readable
    # Binaries the exec goes through on the way, which must run too: `env` for a script's
    # `#!/usr/bin/env prog` (the kernel execs env, env execs prog).
    also: tuple[Binary, ...] = ()


@dataclass(frozen=True)
class Entrypoint:
    argv0: str                # as the config names it
    binary: Binary | None     # None when the file is not in the image
    problem: str | None       # why it could not be settled, a sentence


# --- ELF ---------------------------------------------------------------------------------------

# e_machine -> (in words, docker's architecture); a None architecture depends on class/endianness.
MACHINES: dict[int, tuple[str, str | None]] = {
    3: ("i386", "386"),
    8: ("MIPS", None),
    20: ("PowerPC", None),
    21: ("PowerPC64", None),
    22: ("IBM S/390", None),
    40: ("ARM", "arm"),
    62: ("x86-64", "amd64"),
    183: ("AArch64", "arm64"),
    243: ("RISC-V", None),
    258: ("LoongArch", None),
}


def elf_machine(head: bytes) -> tuple[str, str | None] | None:
    """(machine in words, docker arch) for an ELF header, None if `head` is not ELF."""
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    elf_class, data = head[4], head[5]  # 1: 32-bit, 2: 64-bit; 1: little, 2: big endian
    if elf_class not in (1, 2) or data not in (1, 2):
        return None  # not a header the kernel would load
    number = int.from_bytes(head[18:20], "little" if data == 1 else "big")
    if number not in MACHINES:
        return f"machine {number}", None
    words, arch = MACHINES[number]
    bits64, little = elf_class == 2, data == 1
    if number == 21:
        return ("PowerPC64 little-endian", "ppc64le") if little else (words, "ppc64")
    if number == 8:
        return words, ("mips64" if bits64 else "mips") + ("le" if little else "")
    if number == 22:
        return words, "s390x" if bits64 else None
    if number == 243:
        return words, "riscv64" if bits64 else None
    if number == 258:
        return words, "loong64" if bits64 else None
    return words, arch


# --- reading a layer ---------------------------------------------------------------------------


class _Hashing:
    """The blob's bytes as they are read, hashed on the way, never more than `limit` (the
    size the manifest declares, when it does): a registry that keeps sending is cut off."""

    def __init__(self, blob: BinaryIO, algorithm: str, limit: int = 0) -> None:
        self._blob = blob
        self.hash = hashlib.new(algorithm)
        self.limit, self.count = limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self._blob.read(size)
        self.count += len(data)
        if self.limit and self.count > self.limit:
            raise LayerError(f"the registry sent more than the {self.limit} bytes its manifest"
                             " declares.")
        self.hash.update(data)
        return data

    def drain(self) -> None:
        """Read what the tar stream left (end-of-archive padding), so the digest covers all."""
        while self.read(CHUNK):
            pass


class _Bounded:
    """A decompressed stream that refuses to unpack past `limit` bytes (a decompression
    bomb: a few compressed megabytes can unpack to terabytes)."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self._stream, self.limit, self.count = stream, limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.count += len(data)
        if self.count > self.limit:
            raise LayerError(f"it unpacks to more than {self.limit} bytes (a decompression"
                             " bomb?).")
        return data


class _Unbounded(tarfile.TarError):
    pass


class _BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses a long-name or extended header too large to be real, before
    tarfile reads it whole into memory (a few compressed bytes can declare gigabytes)."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        long_name = self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
        if long_name and self.size > MAX_NAME + 1:
            raise _Unbounded(f"it has a member name longer than {MAX_NAME} characters")
        extended = self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
        if extended and self.size > MAX_PAX_HEADER:
            raise _Unbounded(f"it has an extended header of {self.size} bytes")
        # A private method of tarfile (3.11 to 3.13), the one place a header's size is known
        # before its data is read.
        return super()._proc_member(tarfile_)  # type: ignore[misc]


def _compression(layer: Layer) -> str:
    media_type = layer.media_type
    if "foreign" in media_type or "nondistributable" in media_type:
        raise LayerError(
            f"Layer {layer.digest} is a foreign (nondistributable) layer ({media_type}): "
            "registries do not serve it, so its files cannot be read. Fix: check this image "
            "by running it (inv check-arm IMAGE).")
    for suffix, compression in (("tar+gzip", "gzip"), ("tar.gzip", "gzip"),
                                ("tar+zstd", "zstd"), ("tar.zstd", "zstd"), ("tar", "tar")):
        if media_type.endswith(suffix):
            return compression
    raise LayerError(
        f"Layer {layer.digest} has the media type {media_type!r}, which is not a layer this "
        "check can read (a tar, gzip or zstd compressed). Fix: check this image by running it "
        "(inv check-arm IMAGE).")


def _decompressed(raw: _Hashing, compression: str) -> BinaryIO:
    source = cast(BinaryIO, raw)  # read() is all the decompressors and tarfile call
    if compression == "gzip":
        return cast(BinaryIO, gzip.GzipFile(fileobj=source, mode="rb"))
    if compression == "zstd":
        # read_across_frames: a layer may be many frames (zstd:chunked, estargz)
        return cast(BinaryIO, zstandard.ZstdDecompressor().stream_reader(
            source, read_across_frames=True, closefd=False))
    return source


def read_layer(layer: Layer, open_blob: Opener,
               on_fetch: Callable[[], None] = lambda: None) -> LayerIndex:
    """Stream one layer blob into its index, verifying its digest (LayerError otherwise).
    What the opener raises (the registry unreachable) is passed on as it is."""
    compression = _compression(layer)
    algorithm, _, expected = layer.digest.partition(":")
    if algorithm not in ("sha256", "sha384", "sha512") or not expected:
        raise LayerError(f"Layer {layer.digest!r} has a digest this check cannot verify "
                         "(sha256:HEX, sha384:HEX or sha512:HEX).")
    on_fetch()
    with open_blob(layer) as blob:
        raw = _Hashing(blob, algorithm, layer.size or MAX_UNDECLARED)
        unpacked = max(MIN_UNPACKED, UNPACK_RATIO * layer.size)
        try:
            index = _index(cast(BinaryIO, _Bounded(_decompressed(raw, compression), unpacked)))
            raw.drain()
        except (tarfile.TarError, zlib.error, EOFError, gzip.BadGzipFile, zstandard.ZstdError,
                RecursionError) as error:
            raw.drain()  # a blob damaged in transit is a digest mismatch, said as such
            if raw.hash.hexdigest() == expected:
                raise LayerError(
                    f"Layer {layer.digest} cannot be read as {compression} tar "
                    f"({layer.media_type}): {error or type(error).__name__}. Fix: rebuild "
                    "and push the image.") from error
        except LayerError as error:
            raise LayerError(f"Layer {layer.digest} cannot be read: {error}") from error
    actual = raw.hash.hexdigest()
    if actual != expected:
        raise LayerError(
            f"Layer {layer.digest} does not match its digest: the bytes the registry sent hash "
            f"to {algorithm}:{actual}. Fix: push the image to the registry again.")
    return index


def _normalized(name: str) -> str | None:
    """A member name as an absolute path ("./usr/bin/x" and "usr/bin/x" are "/usr/bin/x";
    a ".." above the root stays at the root, as when the layer is applied); None for the
    root itself."""
    path = "/" + posixpath.normpath("/" + name).lstrip("/")
    return None if path == "/" else path


def _add_parents(entries: dict[str, Entry], path: str) -> None:
    """A layer holding /a/b/c holds /a and /a/b as directories, listed or not."""
    parent = posixpath.dirname(path)
    while parent != "/" and parent not in entries:
        entries[parent] = DIRECTORY
        parent = posixpath.dirname(parent)


def _index(stream: BinaryIO) -> LayerIndex:
    index = LayerIndex()
    entries = index.entries
    with tarfile.open(fileobj=stream, mode="r|", tarinfo=_BoundedTarInfo) as tar:
        for count, member in enumerate(tar, 1):
            # Stream mode keeps every TarInfo it read; nothing here needs them again.
            tar.members.clear()  # type: ignore[attr-defined]
            if count > MAX_MEMBERS:
                raise LayerError(f"it has more than {MAX_MEMBERS} members.")
            if len(member.name) > MAX_NAME or len(member.linkname) > MAX_NAME:
                raise LayerError(f"it has a member name longer than {MAX_NAME} characters.")
            path = _normalized(member.name)
            if path is None:
                continue
            parent, name = posixpath.split(path)
            _add_parents(entries, path)
            if name == OPAQUE:
                index.opaque.add(parent)
            elif name.startswith(WHITEOUT):
                if not name.startswith(WHITEOUT + WHITEOUT):  # aufs bookkeeping, not a path
                    index.whiteouts.add(posixpath.join(parent, name[len(WHITEOUT):]))
            elif member.isreg():
                content = tar.extractfile(member)
                head = content.read(HEAD_SIZE) if content else b""
                entries[path] = Entry("file", member.mode, head=head)
            elif member.isdir():
                entries[path] = Entry("dir", member.mode)
            elif member.issym():
                entries[path] = Entry("symlink", member.mode, target=member.linkname)
            elif member.islnk():
                # A hard link names an earlier member of the same layer: it is that file.
                target = _normalized(member.linkname) or "/"
                entries[path] = entries.get(target) or Entry("hardlink", target=target)
            else:
                entries[path] = Entry("other", member.mode)
    return index


# --- the merged view ---------------------------------------------------------------------------


class _Unsettled(Exception):
    """Why the program cannot be found: a sentence for Entrypoint.problem."""


class _Image:
    """The image's layers merged as overlayfs shows them, read top first, each only when a
    lookup is not settled by the layers above it."""

    def __init__(self, layers: Sequence[Layer], open_blob: Opener, cache: LayerCache) -> None:
        self._top_first = list(reversed(layers))
        self._open_blob = open_blob
        self._cache = cache
        self._indexes: list[LayerIndex] = []

    def _layer(self, depth: int) -> LayerIndex:
        while len(self._indexes) <= depth:
            layer = self._top_first[len(self._indexes)]
            self._indexes.append(self._cache.index(layer, self._open_blob))
        return self._indexes[depth]

    def entry(self, path: str) -> Entry | None:
        """What `path` (absolute, normalized, symlinks in it not followed) is; None: absent."""
        if path == "/":
            return DIRECTORY
        ancestors = []
        parent = posixpath.dirname(path)
        while True:
            ancestors.append(parent)
            if parent == "/":
                break
            parent = posixpath.dirname(parent)
        for depth in range(len(self._top_first)):
            layer = self._layer(depth)
            found = layer.entries.get(path)
            if found is not None:
                return found
            if path in layer.whiteouts:
                return None
            for ancestor in ancestors:
                if ancestor in layer.whiteouts or ancestor in layer.opaque:
                    return None
                above = layer.entries.get(ancestor)
                if above is not None and above.kind != "dir":
                    return None  # a file or symlink here replaces the lower directory
        return None

    def resolve(self, path: str) -> tuple[str, Entry]:
        """The path `path` names once every symlink in it is followed, as the kernel walks it
        (component by component), and what is there."""
        pending = [part for part in path.split("/") if part not in ("", ".")]
        current, hops = "/", 0
        while pending:
            name = pending.pop(0)
            if name == "..":
                current = posixpath.dirname(current)
                continue
            candidate = posixpath.join(current, name)
            entry = self.entry(candidate)
            if entry is None:
                if not hops:
                    raise _Unsettled(f"{path} is not in the image")
                leads_to = posixpath.join(candidate, *pending)
                raise _Unsettled(f"{path} is not in the image (its symbolic links lead to "
                                 f"{leads_to}, which is missing)")
            if entry.kind == "symlink":
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise _Unsettled(f"{path} goes through more than {MAX_SYMLINK_HOPS} "
                                     "symbolic links (a loop)")
                if entry.target.startswith("/"):
                    current = "/"
                pending[:0] = [p for p in entry.target.split("/") if p not in ("", ".")]
                continue
            if not pending:
                return candidate, entry
            if entry.kind != "dir":
                raise _Unsettled(f"{path} is not in the image ({candidate} is not a directory)")
            current = candidate
        return current, DIRECTORY


# --- the entrypoint ----------------------------------------------------------------------------


def entrypoint(config: dict, layers: Sequence[Layer], open_blob: Opener,
               cache: LayerCache) -> Entrypoint:
    """The program the image's entrypoint execs and its ELF machine.

    config: the image config JSON (its "config" key holds Entrypoint, Cmd, Env, WorkingDir);
    layers: as the manifest lists them, bottom first. A path that cannot be settled is the
    Entrypoint's problem; a layer that cannot be read raises LayerError."""
    settings = config.get("config") or {}
    argv = _strings(settings.get("Entrypoint")) + _strings(settings.get("Cmd"))
    if not argv or not argv[0]:
        return Entrypoint("", None, "the image sets no entrypoint or command")
    argv0 = argv[0]
    workdir = posixpath.normpath(posixpath.join("/", settings.get("WorkingDir") or "/"))
    image = _Image(layers, open_blob, cache)
    via: list[str] = []
    try:
        if argv0.startswith("/"):
            path = argv0
        elif "/" in argv0:
            path = posixpath.normpath(posixpath.join(workdir, argv0))
            via.append(f"{argv0} -> {path} (WorkingDir {workdir})")
        else:
            path = _on_path(image, argv0, _path_variable(settings.get("Env")), workdir)
            via.append(f"{argv0} -> {path} (PATH)")
        search = _path_variable(settings.get("Env"))
        return Entrypoint(argv0, _program(image, path, workdir, via, search), None)
    except _Unsettled as unsettled:
        return Entrypoint(argv0, None, str(unsettled))


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [str(item) for item in value]
    return []


def _path_variable(env: object) -> str:
    found = DEFAULT_PATH
    for variable in _strings(env):
        if variable.startswith("PATH="):
            found = variable[len("PATH="):]  # the last one wins, as in a process environment
    return found


def _on_path(image: _Image, name: str, search: str, workdir: str) -> str:
    """The first directory of PATH holding an executable regular file `name` (after
    symlinks), as execvp looks."""
    for directory in search.split(":"):
        candidate = posixpath.join(workdir, directory or ".", name)
        try:
            _, entry = image.resolve(candidate)
        except _Unsettled:
            continue
        if entry.kind == "file" and entry.mode & 0o111:
            return posixpath.normpath(candidate)
    raise _Unsettled(f"{name} is not an executable file in any directory of the image's PATH "
                     f"({search})")


def _program(image: _Image, path: str, workdir: str, via: list[str], search: str) -> Binary:
    """The file the kernel execs for `path`: itself, or the interpreter its `#!` line names
    (for `#!/usr/bin/env prog`, the prog env finds on PATH: the program that does the work)."""
    script = ""
    also: tuple[Binary, ...] = ()
    for _ in range(MAX_INTERPRETERS + 1):
        try:
            resolved, entry = image.resolve(path)
        except _Unsettled as unsettled:
            if script:
                raise _Unsettled(f"{script} needs {path} (its #! line), but {unsettled}") from None
            raise
        if resolved != path:
            via.append(f"{path} -> {resolved}")
        if entry.kind == "dir":
            raise _Unsettled(f"{resolved} is a directory, not a program")
        if entry.kind == "hardlink":
            raise _Unsettled(f"{resolved} is a hard link to {entry.target}, which its layer "
                             "does not hold")
        if entry.kind != "file":
            raise _Unsettled(f"{resolved} is not a regular file")
        machine = elf_machine(entry.head)
        if machine is not None:
            return Binary(resolved, machine[0], machine[1], tuple(via), also)
        if not entry.head.startswith(b"#!"):
            return Binary(resolved, None, None, tuple(via), also)
        interpreter, line = _shebang(resolved, entry.head)
        via.append(f"{resolved}: {line}")
        script, path = resolved, posixpath.join(workdir, interpreter)
        program = _env_program(interpreter, line)
        if program:
            try:
                env_path, env = image.resolve(path)
                found = (posixpath.join(workdir, program) if "/" in program
                         else _on_path(image, program, search, workdir))
            except _Unsettled as unsettled:
                raise _Unsettled(f"{script} needs {program} (its #! line), but "
                                 f"{unsettled}") from None
            if env.kind == "file" and (machine := elf_machine(env.head)) is not None:
                also = (*also, Binary(env_path, machine[0], machine[1], (line,)))
            via.append(f"{program} -> {found} (through env)")
            path = found
    raise _Unsettled(f"{script} is reached through more than {MAX_INTERPRETERS} #! interpreters")


def _env_program(interpreter: str, line: str) -> str | None:
    """The program `#!/usr/bin/env [-S] [NAME=VALUE...] prog ...` runs; None for another
    interpreter, or an env line naming no program."""
    if posixpath.basename(interpreter) != "env":
        return None
    words = line[2:].split()[1:]
    while words and (words[0].startswith("-") or "=" in words[0]):
        option = words.pop(0)
        if option in ("-u", "--unset", "-C", "--chdir") and words:
            words.pop(0)  # the option's value, not the program
    return words[0] if words else None


def _shebang(script: str, head: bytes) -> tuple[str, str]:
    """The interpreter a `#!` line names, and the line, as the kernel reads it."""
    line, newline, _ = head.partition(b"\n")
    text = line.decode("utf-8", "surrogateescape")
    words = text[2:].lstrip(" \t")
    interpreter = words.split(" ")[0].split("\t")[0]
    if not newline and len(head) >= HEAD_SIZE and interpreter == words:
        raise _Unsettled(f"the #! line of {script} is longer than {HEAD_SIZE} bytes")
    if not interpreter:
        raise _Unsettled(f"the #! line of {script} names no interpreter")
    if interpreter.endswith("\r"):
        raise _Unsettled(f"{script} has Windows line endings: its #! line names "
                         f"{interpreter!r}, which is not in the image")
    return interpreter, text.rstrip(" \t\r")
