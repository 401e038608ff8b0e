"""The staff-only page with the latest live review."""

from __future__ import annotations

import pytest
from django.urls import reverse

from design_review.models import LiveReview

pytestmark = pytest.mark.django_db


def test_anonymous_and_non_staff_users_cannot_see_or_run_a_review(client, user_named):
    url = reverse("design-review")
    response = client.get(url)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    client.force_login(user_named("alice"))  # not staff
    assert client.get(url).status_code == 302
    assert client.post(url).status_code == 302
    assert not LiveReview.objects.exists()


def test_staff_run_and_see_the_latest_live_review(client, user_named):
    url = reverse("design-review")
    admin = user_named("admin")
    assert admin.is_staff
    client.force_login(admin)
    page = client.get(url)
    assert page.status_code == 200
    assert b"No live review yet" in page.content
    response = client.post(url)
    assert response.status_code == 302
    review = LiveReview.objects.get()
    assert review.triggered_by == admin
    page = client.get(url).content.decode()
    assert "What logging exists for post-incident analysis?" in page
    assert review.highest_severity in page
    for finding in review.report["review"]["findings"][:3]:
        assert finding["rule"] in page
