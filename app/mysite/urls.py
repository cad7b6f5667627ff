# mysite/urls.py
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("chat/", include("chat.urls")),
    # Not in the tutorial: Django's own login and logout views (accounts/login/ and
    # accounts/logout/), so that a message can say who sent it.
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
