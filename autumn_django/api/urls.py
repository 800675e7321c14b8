from django.urls import path

from . import views

app_name = "autumn_api"

urlpatterns = [
    path("me/", views.MeView.as_view(), name="me"),
    path("customers/", views.CustomerListView.as_view(), name="customer-list"),
    path("customers/<str:autumn_id>/", views.CustomerDetailView.as_view(), name="customer-detail"),
    path("entities/", views.EntityListView.as_view(), name="entity-list"),
]
