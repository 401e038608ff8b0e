from django.urls import path

from design_review import views

urlpatterns = [path("", views.latest_review, name="design-review")]
