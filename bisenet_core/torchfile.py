"""Reading torch.save files safely, with one plain line when a file cannot be used.

    blob = load_torch_file(path, 'model file', ModelFileError)

Files are loaded with weights_only=True: no pickled code runs. When torch cannot load a file,
its own message is not passed on: it may carry terminal escape codes, advise reloading with
weights_only=False (the unsafe option), or name a zip-library internal ("central directory").
Instead the file's first bytes say what it is (text, an ONNX model, a pickled object, a cut-off
archive, ...) and the reason names that. bisenet_core.modelfile and
bisenet_core.model.pretrained both read through here.
"""
from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import onnx
import torch

ZIP_MAGIC = b'PK\x03\x04'                      # torch.save's format since torch 1.6
GZIP_MAGIC = b'\x1f\x8b'
HDF5_MAGIC = b'\x89HDF\r\n\x1a\n'               # Keras .h5 weights
LFS_POINTER = b'version https://git-lfs'       # a Git LFS pointer checked out without LFS
HEAD_BYTES = 4096                              # read to tell what a file is
SNIPPET_CHARS = 40                             # of a text file, quoted in the reason


def check_path(path: str | os.PathLike, what: str, error: type[Exception]) -> Path:
    """`path` as a Path, or `error` ('<what> <path>: ...') when it is missing, a folder or empty."""
    path = Path(path)
    if path.is_dir():
        raise error(f'{what} {path}: is a folder, not a file')
    if not path.is_file():
        raise error(f'{what} {path}: not found')
    if path.stat().st_size == 0:
        raise error(f'{what} {path}: empty file')
    return path


def load_torch_file(path: str | os.PathLike, what: str, error: type[Exception],
                    prefix: str = '', onnx_hint: str = ''):
    """torch.load(path, weights_only=True) on the CPU, or `error` with a one-line reason.

    The message reads '<what> <path>: <prefix><reason>' ('backbone weights w.pth: cannot be
    read: a text file, ...'); `onnx_hint` ends the reason for an ONNX model (what to do with
    one here).
    """
    path = check_path(path, what, error)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        try:
            blob = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as exc:  # any failure: explained from the file's bytes below
            reason = unreadable_reason(path, exc, onnx_hint)
        else:
            reason = None
    if reason is not None:  # torch's warnings about a file it could not load are noise
        raise error(f'{what} {path}: {prefix}{reason}')
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename,
                               warning.lineno)
    return blob


def unreadable_reason(path: Path, exc: BaseException, onnx_hint: str = '') -> str:
    """Why torch could not load `path`, from its bytes: one line, no text from torch itself."""
    try:
        with open(path, 'rb') as file:
            head = file.read(HEAD_BYTES)
        size = path.stat().st_size
    except OSError as err:
        return f'cannot be opened ({(err.strerror or type(err).__name__).lower()})'
    code = _imported_name(exc)
    if code is not None:
        return (f'not a plain weights file (it imports {code}); refused for safety: loading '
                'it could run code')
    if head.startswith(ZIP_MAGIC):
        return _zip_reason(path, size)
    if _is_pickle(head):
        if isinstance(exc, EOFError) or 'truncated' in str(exc) or 'Ran out of input' in str(exc):
            return f'truncated: its data ends early ({size} bytes); copy or save it again'
        return ('a pickled Python object, not plain weights (it needs more than torch\'s safe '
                'loader allows); refused for safety: loading it could run code')
    if _is_onnx(path, head):
        return f'an ONNX model, not a torch file{onnx_hint}'
    if head.startswith(LFS_POINTER):
        return 'a Git LFS pointer, not the weights: fetch the file with git lfs pull'
    if head.startswith(GZIP_MAGIC) or head[257:262] == b'ustar':
        return 'a gzip or tar archive, not a torch file: unpack it first'
    if head.startswith(HDF5_MAGIC):
        return 'an HDF5 file (Keras weights?), not a torch file'
    if _is_safetensors(head, size):
        return 'a safetensors file, not a torch.save file: name it .safetensors'
    text = _text_start(head)
    if text is not None:
        return f'a text file, not a torch file (it starts {text!r})'
    return (f'not a torch file: its first bytes ({head[:8].hex(" ")}) match no format torch '
            'writes (random or damaged data?)')


def _imported_name(exc: BaseException) -> str | None:
    """The global a refused pickle would import (torch names it 'GLOBAL os.system'), if any."""
    if not isinstance(exc, pickle.UnpicklingError):
        return None
    found = re.search(r'GLOBAL (\S+)', str(exc))
    name = found.group(1) if found else ''
    # module.attribute (builtins: the bare name); random bytes that happen to start like a
    # GLOBAL opcode give no such name.
    if name and all(part.isidentifier() for part in name.split('.')):
        return name
    return None


def _zip_reason(path: Path, size: int) -> str:
    if not zipfile.is_zipfile(path):
        return (f'truncated or damaged: its zip archive is incomplete ({size} bytes); copy or '
                'save it again')
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        names, damaged = [], True
    if names and not any(name.endswith('data.pkl') for name in names):
        return 'a zip archive, not a torch file (no data.pkl inside)'
    if damaged:
        return 'damaged: part of its zip archive does not read back; copy or save it again'
    return 'a torch zip archive torch cannot load (written by a newer torch?)'


def _is_pickle(head: bytes) -> bool:
    """Pickle protocols 2..5 (torch's legacy format, plain pickles): byte 0x80, the protocol."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _is_onnx(path: Path, head: bytes) -> bool:
    """An ONNX ModelProto: field 1 (ir_version) first, and onnx parses a graph from it."""
    if not head.startswith(b'\x08'):
        return False
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # not protobuf: not ONNX
        return False
    return proto.ir_version > 0 and len(proto.graph.node) > 0


def _is_safetensors(head: bytes, size: int) -> bool:
    """safetensors: an 8-byte little-endian header length, then a JSON header."""
    return (len(head) > 9 and head[8:10] == b'{"'
            and int.from_bytes(head[:8], 'little') <= size - 8)


def _text_start(head: bytes) -> str | None:
    """The first line of a text file (up to SNIPPET_CHARS), or None when `head` is not text."""
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError as err:
        if err.start < len(head) - 3:  # not just a character cut at the end of `head`
            return None
        text = head[:err.start].decode('utf-8')
    if not all(char.isprintable() or char in '\t\n\r\f' for char in text):
        return None  # control bytes (terminal escapes among them): binary, not text
    first = text.strip().split('\n', 1)[0].strip()
    return first[:SNIPPET_CHARS] + ('...' if len(first) > SNIPPET_CHARS else '')
