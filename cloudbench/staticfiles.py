"""Static files under content-hashed names (cached for a year by browsers and nginx), compressed
once at collectstatic, served by WhiteNoise from STATIC_ROOT (`StaticFilesMiddleware`)."""

import os
from typing import ClassVar

from whitenoise.base import scantree
from whitenoise.middleware import WhiteNoiseMiddleware
from whitenoise.storage import CompressedManifestStaticFilesStorage


class HashedStaticFilesStorage(CompressedManifestStaticFilesStorage):
    # The vendor builds end with a `//# sourceMappingURL=` comment naming a map we do not ship;
    # the JavaScript patterns would refuse to collect them. CSS references are still rewritten.
    patterns = tuple(
        (glob, rules)
        for glob, rules in CompressedManifestStaticFilesStorage.patterns
        if glob != "*.js"
    )


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    """WhiteNoise's middleware, its index of STATIC_ROOT kept per process.

    Django builds a handler's middleware once; the test client builds it for every client, and
    WhiteNoise then stats every file again and works out each one's headers and compressed
    variants: about 80 ms a client. The index is reused only for the same files (paths, sizes,
    modification times) and the same options (a custom WHITENOISE_IMMUTABLE_FILE_TEST is a new
    function each time: then nothing is reused).

    A STATIC_ROOT that collectstatic filled has its manifest, which every collectstatic writes
    again, and a file it adds, replaces or removes changes its folder: there the manifest and the
    folders are compared (a few stats) instead of every file (over six hundred)."""

    _indexes: ClassVar[dict[tuple, tuple[tuple, dict]]] = {}

    def update_files_dictionary(self, root: str, prefix: str) -> None:
        if "immutable_file_test" in vars(self):
            super().update_files_dictionary(root, prefix)
            return
        files = _collected_state(root) or tuple(
            sorted((path, st.st_size, st.st_mtime_ns) for path, st in scantree(root))
        )
        options = (
            self.max_age,
            self.allow_all_origins,
            self.charset,
            self.index_file,
            self.add_headers_function,
            tuple(sorted(self.media_types.types_map.items())),
        )
        known = self._indexes.get((root, prefix))
        if known is not None and known[0] == (files, options):
            self.files.update(known[1])
            return
        own, self.files = self.files, {}
        super().update_files_dictionary(root, prefix)
        index, self.files = self.files, own
        self.files.update(index)
        self._indexes[(root, prefix)] = ((files, options), index)


MANIFEST = "staticfiles.json"


def _collected_state(root: str) -> tuple | None:
    """What changes whenever collectstatic changes ``root``: the manifest it writes and each
    folder's modification time. None where there is no manifest."""
    try:
        manifest = os.stat(os.path.join(root, MANIFEST))
    except OSError:
        return None
    folders = []
    for folder, _subfolders, _files in os.walk(root):
        try:
            folders.append((folder, os.stat(folder).st_mtime_ns))
        except OSError:
            return None
    return ("collected", manifest.st_size, manifest.st_mtime_ns, manifest.st_ino, *sorted(folders))
