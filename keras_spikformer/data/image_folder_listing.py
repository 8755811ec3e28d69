"""Listing an untrusted image folder: `<split>/<class>/**/<file>`, files only, inside each class.

Only regular files with an image suffix are listed; devices, FIFOs and broken
links named `.png` are skipped and counted without being opened (a FIFO
would block, `/dev/zero` would never end). Sub-folders are followed by their
real paths: one reached twice (a symlink loop, `c0/loop -> ..`) or one outside
its class folder (a link to another class) is skipped and counted, so no
image is listed twice or under another class's label. File names that are
not UTF-8 are kept (as bytes for TensorFlow); class folder names, which are
written into presets, must be UTF-8.
"""

import collections
import os
import warnings

from keras_spikformer.data.image_sources import IMAGE_SUFFIXES, FolderSource


def _inside(real, root):
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _scan_sorted(folder, skipped):
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda entry: entry.name)
    except OSError:
        skipped["unreadable folders"] += 1
        return []


def class_files(class_dir, ignored, skipped):
    """Image files of one class folder, depth first in sorted order (as `os.walk`).

    Args:
        class_dir: the class folder (str).
        ignored: `Counter` of non-image files by suffix (updated).
        skipped: `Counter` of irregular entries by reason (updated).

    Returns:
        List of file paths (str; non-UTF-8 names as surrogate escapes).

    Example:
    >>> import collections
    >>> class_files("data/train/cat", collections.Counter(),
    ...             collections.Counter())  # doctest: +SKIP
    """
    root_real = os.path.realpath(class_dir)
    seen = {root_real}
    files, stack = [], [class_dir]
    while stack:
        subdirs = []
        for entry in _scan_sorted(stack.pop(), skipped):
            if entry.is_dir():  # follows symlinks
                real = os.path.realpath(entry.path)
                if real in seen:
                    skipped["folders reached twice (links, loops)"] += 1
                elif not _inside(real, root_real):
                    skipped["folder links leaving the class folder"] += 1
                else:
                    seen.add(real)
                    subdirs.append(entry.path)
                continue
            suffix = os.path.splitext(entry.name)[1].lower()
            if suffix not in IMAGE_SUFFIXES:
                ignored[suffix or entry.name] += 1
            elif not entry.is_file():  # device, FIFO, socket or broken link
                skipped["not regular files"] += 1
            else:
                files.append(entry.path)
        stack.extend(reversed(subdirs))
    return files


def _check_utf8_name(folder, name):
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"Class folder {os.fsencode(os.path.join(folder, name))!r} has a name "
            "that is not valid UTF-8; class names are written into the preset. "
            "Rename it (e.g. `convmv -f latin1 -t utf8 -r --notest DIR`)."
        ) from None


def list_image_folder(folder, class_names=None):
    """A `FolderSource` and the class names of `folder/<class>/...`.

    Args:
        folder: `Path` of a split.
        class_names: the training classes (for a test split), or `None`.

    Returns:
        `(FolderSource, class_names)`.

    Example:
    >>> source, names = list_image_folder(Path("data/train"))  # doctest: +SKIP
    """
    found = sorted(
        p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    for name in found:
        _check_utf8_name(folder, name)
    if class_names is None:
        class_names = found
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise ValueError(
            f"{folder} has class folders {unknown[:5]} that the training split "
            "lacks. Give both splits the same class folders (an empty one is fine)."
        )
    paths, labels, empty = [], [], []
    ignored, skipped = collections.Counter(), collections.Counter()
    for label, name in enumerate(class_names):
        class_dir = os.path.join(os.fspath(folder), name)
        files = class_files(class_dir, ignored, skipped) if name in found else []
        paths.extend(files)
        labels.extend([label] * len(files))
        if not files:
            empty.append(name)
    if ignored:
        warnings.warn(
            f"{folder}: skipped {sum(ignored.values())} files that are not "
            f"{'/'.join(IMAGE_SUFFIXES)} images ({dict(ignored.most_common(5))}).",
            stacklevel=3,
        )
    if skipped:
        warnings.warn(
            f"{folder}: skipped without reading {dict(skipped)} (only regular files "
            "inside each class folder are read; a symlinked sub-folder is followed "
            "once and only when it stays inside its class folder).",
            stacklevel=3,
        )
    if empty:
        warnings.warn(
            f"{folder}: {len(empty)} class folders hold no image ({empty[:5]}); "
            "they stay classes (labels follow the sorted folder names).",
            stacklevel=3,
        )
    source = FolderSource(paths, labels, ignored, empty, skipped)
    return source, list(class_names)
