"""Only with CHANNEL_LAYER=postgres (see settings.py): channels-postgres's tables live in
the PostgreSQL database of its own alias, and the tutorial's stay in SQLite."""

from mysite.environment import CHANNELS_POSTGRES_ALIAS

APP_LABEL = "channels_postgres"


class ChannelsPostgresRouter:
    def db_for_read(self, model, **hints):
        return CHANNELS_POSTGRES_ALIAS if model._meta.app_label == APP_LABEL else None

    def db_for_write(self, model, **hints):
        return CHANNELS_POSTGRES_ALIAS if model._meta.app_label == APP_LABEL else None

    def allow_migrate(self, db, app_label, **hints):
        # Its migrations use PostgreSQL's PL/pgSQL, which SQLite cannot run; and the
        # tutorial's apps have no business in the layer's database.
        if app_label == APP_LABEL:
            return db == CHANNELS_POSTGRES_ALIAS
        if db == CHANNELS_POSTGRES_ALIAS:
            return False
        return None
