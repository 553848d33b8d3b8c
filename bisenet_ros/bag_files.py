"""Opening a rosbag2 bag folder: its metadata.yaml and data files checked, damage in one line.

rosbags' own messages for a damaged bag name neither the file nor the problem in a user's terms
("Invalid bag metadata: string indices must be integers", a bare UnicodeDecodeError, "File end
magic is invalid."). metadata.yaml is checked here before rosbags reads it, and what the reader
still raises (a truncated or corrupt data file) becomes a BagError naming the file.
"""
from __future__ import annotations

import os
import sqlite3
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import ReaderError

# What rosbags reads: metadata versions up to 9 (Kilted), these storage plugins.
MAX_METADATA_VERSION = 9
STORAGE_IDS = ('mcap', 'sqlite3')
DATA_SUFFIXES = ('.mcap', '.db3')
# The keys rosbags reads from `rosbag2_bagfile_information`, with their types.
_REQUIRED = {'version': int, 'storage_identifier': str, 'relative_file_paths': list,
             'duration': dict, 'starting_time': dict, 'message_count': int,
             'topics_with_message_count': list}
# rosbags' wording for a damaged data file -> what it means (else: its own words).
_DATA_FILE_PROBLEMS = (
    ('File end magic is invalid', 'it ends early (truncated: a recording that did not finish?)'),
    ('File magic is invalid', 'not an MCAP file'),
    ('Profile is not ros2', 'an MCAP file, but not of ROS 2 messages'),
    ('seems to be empty', 'empty file'),
    ('file is not a database', 'not an SQLite database'),
    ('database disk image is malformed', 'the SQLite database is corrupt or truncated'),
    ('missing tables', 'an SQLite database without the rosbag2 tables'),
)
_DAMAGE_WORDS = ('Truncated', 'truncated', 'Chunk', 'chunk', 'record', 'Invalid MCAP')


class BagError(RuntimeError):
    """A bag or drive folder cannot be used (one-line message naming the path and the problem)."""


def bag_folder(bag: str | os.PathLike) -> Path:
    """The bag's folder (a data file given instead of its folder is fine), or BagError."""
    path = Path(bag)
    if not path.exists():
        raise BagError(f'bag {path}: not found')
    if path.is_file() and path.suffix in DATA_SUFFIXES:
        path = path.parent
    if not (path / 'metadata.yaml').is_file():
        raise BagError(f'bag {path}: no metadata.yaml; expected a rosbag2 bag folder')
    return path


def read_metadata(folder: Path) -> dict:
    """`rosbag2_bagfile_information` of folder/metadata.yaml, checked as far as rosbags reads it."""
    where = folder / 'metadata.yaml'
    try:
        loaded = yaml.safe_load(where.read_bytes().decode('utf-8'))
    except UnicodeDecodeError as exc:
        raise BagError(f'{where}: not a text file (byte {exc.start}); a damaged bag?') from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        line = f' at line {mark.line + 1}' if mark is not None else ''
        problem = getattr(exc, 'problem', None) or type(exc).__name__
        raise BagError(f'{where}: not valid YAML ({problem}{line})') from None
    except OSError as exc:
        raise BagError(f'{where}: cannot be read: {exc.strerror}') from None
    info = loaded.get('rosbag2_bagfile_information') if isinstance(loaded, dict) else None
    if not isinstance(info, dict):
        raise BagError(f'{where}: no rosbag2_bagfile_information section; not rosbag2 metadata')
    for key, kind in _REQUIRED.items():
        if not isinstance(info.get(key), kind):
            found = 'missing' if key not in info else f'a {type(info[key]).__name__}'
            raise BagError(f'{where}: {key} must be a {kind.__name__}, is {found}')
    if info['version'] > MAX_METADATA_VERSION:
        raise BagError(f'{where}: metadata version {info["version"]} is newer than this reader '
                       f'understands ({MAX_METADATA_VERSION}); upgrade rosbags')
    if info['storage_identifier'] not in STORAGE_IDS:
        raise BagError(f'{where}: storage {info["storage_identifier"]!r} is not supported '
                       f'(only {" and ".join(STORAGE_IDS)})')
    for topic in info['topics_with_message_count']:
        meta = topic.get('topic_metadata') if isinstance(topic, dict) else None
        if not isinstance(meta, dict) or not all(
                isinstance(meta.get(k), str) for k in ('name', 'type', 'serialization_format')):
            raise BagError(f'{where}: a topic entry lacks its name, type or serialization '
                           f'format: {str(topic)[:120]}')
    missing = [name for name in info['relative_file_paths']
               if not (folder / Path(str(name)).name).is_file()]
    if missing:
        raise BagError(f'bag {folder}: data file {", ".join(map(str, missing))} named in '
                       f'metadata.yaml is missing')
    return info


@contextmanager
def open_bag(bag: str | os.PathLike, typestore) -> Iterator[AnyReader]:
    """An open AnyReader of the bag; reading errors in the `with` body become one BagError.

    Errors of the caller's own (a BagError, a message it cannot use) pass unchanged.
    """
    folder = bag_folder(bag)
    files = [Path(str(name)).name for name in read_metadata(folder)['relative_file_paths']]
    try:
        with AnyReader([folder], default_typestore=typestore) as reader:
            yield reader
    except (AnyReaderError, ReaderError, OSError, EOFError, struct.error,
            sqlite3.Error) as exc:
        raise BagError(data_file_problem(folder, files, exc)) from None


def data_file_problem(folder: Path, files: list[str], exc: BaseException) -> str:
    """One line naming the bag's data file and what is wrong with it."""
    text = str(exc).strip().splitlines()[0].rstrip('.') if str(exc).strip() else ''
    text = text or type(exc).__name__
    named = files[0] if len(files) == 1 else f'one of {", ".join(files)}'
    reason = next((plain for words, plain in _DATA_FILE_PROBLEMS if words in text), None)
    if reason is None and any(word in text for word in _DAMAGE_WORDS):
        reason = f'truncated or corrupt ({text})'
    if reason is None:
        return f'bag {folder}: cannot be read: {text}'
    return f'bag {folder}: data file {named}: {reason}'
