"""Static files under content-hashed names (cached for a year by browsers and nginx), compressed
once at collectstatic, served by WhiteNoise from STATIC_ROOT."""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class HashedStaticFilesStorage(CompressedManifestStaticFilesStorage):
    # The vendor builds end with a `//# sourceMappingURL=` comment naming a map we do not ship;
    # the JavaScript patterns would refuse to collect them. CSS references are still rewritten.
    patterns = tuple(
        (glob, rules)
        for glob, rules in CompressedManifestStaticFilesStorage.patterns
        if glob != "*.js"
    )
