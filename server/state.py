"""Typed application state: every long-lived part, reachable as app[KEY]."""

from __future__ import annotations

import asyncio

from aiohttp import web

from server.auth import Authenticator
from server.config import Settings
from server.detection.detector import Detector
from server.hub import Hub
from server.label_changes import LabelChanges
from server.learning import Trainer
from server.pipeline import TxQueue
from server.scorecard import Scorecard
from server.state_saver import StateSaver
from server.stats import Stats
from server.store.base import Store

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
HUB = web.AppKey("hub", Hub)
QUEUE = web.AppKey("queue", TxQueue)
DETECTOR = web.AppKey("detector", Detector)
STATS = web.AppKey("stats", Stats)
AUTH = web.AppKey("auth", Authenticator)
TRAINER = web.AppKey("trainer", Trainer)  # absent when the 'model' setting is off
SCORECARD = web.AppKey("scorecard", Scorecard)
STATE_SAVER = web.AppKey("state_saver", StateSaver)
LABEL_CHANGES = web.AppKey("label_changes", LabelChanges)
# Where each setting not left at its default came from ("environment FRAUDWATCH_PORT"),
# as load_settings found it: a message about a value read later names its source.
SETTING_SOURCES = web.AppKey("setting_sources", dict[str, str])
# One rules reload at a time (server/rules_reload.py): an admin's POST and a SIGHUP overlap.
RULES_RELOAD = web.AppKey("rules_reload", asyncio.Lock)
