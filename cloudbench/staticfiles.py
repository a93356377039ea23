"""Static files under content-hashed names (cached for a year by browsers and nginx), compressed
once at collectstatic, served by WhiteNoise from STATIC_ROOT (`StaticFilesMiddleware`)."""

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
    function each time: then nothing is reused)."""

    _indexes: ClassVar[dict[tuple, tuple[tuple, dict]]] = {}

    def update_files_dictionary(self, root: str, prefix: str) -> None:
        if "immutable_file_test" in vars(self):
            super().update_files_dictionary(root, prefix)
            return
        files = tuple(sorted((path, st.st_size, st.st_mtime_ns) for path, st in scantree(root)))
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
