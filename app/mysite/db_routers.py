"""Only with CHANNEL_LAYER=postgres or sqlite (see settings.py): the layer's own tables live
in the database of its own alias (channels-postgres: PostgreSQL; channels-lite: the layer's
SQLite file), and the tutorial's stay in CHAT_DATABASE."""

from mysite.environment import CHANNELS_LITE_ALIAS, CHANNELS_POSTGRES_ALIAS


class _LayerAppRouter:
    """Routes the models of one layer's Django app, ``app_label``, to ``alias``."""

    app_label: str
    alias: str

    def db_for_read(self, model, **hints):
        return self.alias if model._meta.app_label == self.app_label else None

    def db_for_write(self, model, **hints):
        return self.alias if model._meta.app_label == self.app_label else None

    def allow_migrate(self, db, app_label, **hints):
        # The layer's tables only in its database (channels-postgres's migrations use
        # PostgreSQL's PL/pgSQL, which SQLite cannot run); and the tutorial's apps have no
        # business in the layer's database.
        if app_label == self.app_label:
            return db == self.alias
        if db == self.alias:
            return False
        return None


class ChannelsPostgresRouter(_LayerAppRouter):
    app_label = "channels_postgres"
    alias = CHANNELS_POSTGRES_ALIAS


class ChannelsLiteRouter(_LayerAppRouter):
    # channels-lite ships a router of its own (channels_lite.router.ChannelsRouter), but it
    # lets every other app migrate into the layer's file too (``migrate --database
    # channels_lite`` would put the users there), and it builds the channel layer just to
    # learn the alias; this one keeps them apart as for channels-postgres.
    app_label = "channels_lite"
    alias = CHANNELS_LITE_ALIAS
