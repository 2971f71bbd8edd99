"""Extra sign-up fields for allauth's headless sign-up: a workspace name, or an invitation token."""

from __future__ import annotations

from django import forms


class SignupForm(forms.Form):
    workspace_name = forms.CharField(max_length=100, required=False)
    invitation = forms.CharField(max_length=200, required=False)

    def signup(self, request, user) -> None:
        from allauth.account.adapter import get_adapter

        from accounts.services.signup import user_signed_up

        joined_by_invitation = user_signed_up(
            user=user,
            workspace_name=self.cleaned_data.get("workspace_name") or "",
            invitation_token=self.cleaned_data.get("invitation") or "",
            ip_address=request.META.get("REMOTE_ADDR"),
        )
        if joined_by_invitation:
            # allauth records a stashed address as verified when it sets up the user's emails.
            get_adapter(request).stash_verified_email(request, user.email)
