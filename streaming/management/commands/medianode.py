from django.core.management.base import BaseCommand

from streaming.node_worker import node_worker


class Command(BaseCommand):
    help = (
        "Run the media node: the aiortc peer connections of the rooms and their livestreams, "
        "reached through the channel layer's media-node channel."
    )

    def handle(self, *args, **options) -> None:
        self.stdout.write("media node: consuming the media-node channel")
        node_worker().run()
