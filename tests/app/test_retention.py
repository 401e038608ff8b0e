"""Conversation retention: old conversations go with their messages and citations, each
batch audited, recent ones stay, and the audit chain verifies after the purge."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import close_old_connections
from django.test import override_settings
from django.utils import timezone

from app.celery import celery_app
from app.conversation_crypto import NewMessage, conversation_create, messages_add
from app.models import Citation, Conversation, Message, User
from app.retention import retention_run
from audit.models import AuditEvent, EventType
from audit.verify import verify_chain


def _conversation(owner: User, *, age_days: int, messages: int = 2) -> Conversation:
    conversation, key = conversation_create(owner_id=owner.pk, title="t")
    new = [NewMessage(role=Message.Role.USER, content=f"m{i}") for i in range(messages)]
    for message in messages_add(conversation=conversation, key=key, messages=new):
        Citation.objects.create(message=message, document_id=1, chunk_id=1, title="d", marker=1)
    Conversation.objects.filter(pk=conversation.pk).update(
        updated_at=timezone.now() - timedelta(days=age_days)
    )
    return conversation


@pytest.mark.django_db
@override_settings(RETENTION_CONVERSATION_DAYS=30, RETENTION_BATCH=2, RETENTION_AUDIT_DAYS=0)
def test_retention_purges_old_conversations_with_their_messages_and_audits_each_batch(
    user_named,
):
    alice = user_named("alice")
    old = [_conversation(alice, age_days=31 + i) for i in range(3)]
    recent = _conversation(alice, age_days=29)
    before = AuditEvent.objects.count()

    report = retention_run()

    assert report.conversations == 3
    assert report.messages == 6
    assert not Conversation.objects.filter(pk__in=[c.pk for c in old]).exists()
    assert not Message.objects.filter(conversation_id__in=[c.pk for c in old]).exists()
    assert not Citation.objects.filter(message__conversation_id__in=[c.pk for c in old]).exists()
    assert Conversation.objects.filter(pk=recent.pk).exists()
    assert Message.objects.filter(conversation=recent).count() == 2
    purged = list(AuditEvent.objects.filter(event_type=EventType.RETENTION_PURGED).order_by("id"))[
        -2:
    ]
    assert [e.metadata["conversations"] for e in purged] == [2, 1]  # batches of two
    assert sorted(i for e in purged for i in e.metadata["conversation_ids"]) == sorted(
        c.pk for c in old
    )
    assert AuditEvent.objects.count() == before + 2
    assert verify_chain().ok


@pytest.mark.django_db
@override_settings(RETENTION_CONVERSATION_DAYS=0, RETENTION_AUDIT_DAYS=0)
def test_retention_policy_zero_keeps_everything(user_named):
    old = _conversation(user_named("bob"), age_days=4000)
    assert retention_run().conversations == 0
    assert Conversation.objects.filter(pk=old.pk).exists()


@pytest.mark.django_db
@override_settings(RETENTION_CONVERSATION_DAYS=30, RETENTION_AUDIT_DAYS=1)
def test_retention_run_checkpoints_the_audit_trail():
    report = retention_run(now=timezone.now() + timedelta(days=2))
    assert report.checkpoint_id is not None
    checkpoint = AuditEvent.objects.get(pk=report.checkpoint_id)
    assert checkpoint.event_type == EventType.RETENTION_CHECKPOINT
    assert checkpoint.metadata["through_id"] < checkpoint.pk
    assert verify_chain().ok


def test_beat_schedule_names_a_task_the_worker_knows():
    celery_app.loader.import_default_modules()
    schedule = celery_app.conf.beat_schedule
    assert schedule["retention"]["task"] in celery_app.tasks


@override_settings(RETENTION_CONVERSATION_DAYS=30, RETENTION_AUDIT_DAYS=0)
def test_the_scheduled_task_runs_in_a_real_worker(celery_worker_thread):
    old = _conversation(User.objects.create(username="retention-subject"), age_days=45)
    celery_app.send_task(celery_app.conf.beat_schedule["retention"]["task"])
    deadline = time.monotonic() + 30
    while Conversation.objects.filter(pk=old.pk).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
        close_old_connections()
    assert not Conversation.objects.filter(pk=old.pk).exists()
    assert AuditEvent.objects.filter(
        event_type=EventType.RETENTION_PURGED, metadata__contains={"conversation_ids": [old.pk]}
    ).exists()
