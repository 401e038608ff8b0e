from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from app import api, views
from audit import views as audit_views

api_v1 = [
    path("chat", api.ChatView.as_view(), name="api-chat"),
    path("conversations", api.ConversationListView.as_view(), name="api-conversations"),
    path(
        "conversations/<int:conversation_id>",
        api.ConversationDetailView.as_view(),
        name="api-conversation",
    ),
    path("search", api.SearchView.as_view(), name="api-search"),
    path("documents", api.DocumentListView.as_view(), name="api-documents"),
    path(
        "documents/<int:document_id>/content",
        api.DocumentContentView.as_view(),
        name="api-document-content",
    ),
    path("ingestion-jobs/<int:job_id>", api.IngestionJobView.as_view(), name="api-ingestion-job"),
    path("auth/token", api.TokenIssueView.as_view(), name="api-token"),
    path("auth/token/<uuid:token_id>", api.TokenRevokeView.as_view(), name="api-token-revoke"),
    path("schema", SpectacularAPIView.as_view(), name="api-schema"),
]

urlpatterns = [
    path("", views.chat_page, name="chat"),
    path("c/<int:conversation_id>/", views.chat_page, name="chat-conversation"),
    path("documents/<int:document_id>/", views.document_page, name="document"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", audit_views.metrics, name="metrics"),
    path("api/v1/", include(api_v1)),
    path("accounts/", include("allauth.urls")),
    path("staff/design-review/", include("design_review.urls")),
    path("admin/", admin.site.urls),
]

handler404 = "app.views.not_found"
handler500 = "app.views.server_error"
