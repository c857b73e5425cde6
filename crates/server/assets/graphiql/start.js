// Starts GraphiQL against this server's /graphql, from files this server
// serves (no CDN). A link may carry an admin token in its fragment,
// `#token=…`: fragments are never sent to a server, so the token reaches no
// log. It becomes the Authorization header, and the fragment is dropped.
"use strict";

const EXAMPLE_QUERY = `# Your tenant's API keys: press Run (or Ctrl-Enter).
{
  apiKeys(first: 10) {
    totalCount
    nodes {
      lastFour
      description
      status
      owner { name role }
      createdAt
      lastEditedAt
      lastUsedAt
    }
  }
}
`;

const token = new URLSearchParams(location.hash.slice(1)).get("token");
if (location.hash) {
  history.replaceState(null, "", location.pathname + location.search);
}

const props = {
  fetcher: GraphiQL.createFetcher({ url: new URL("/graphql", location.href).href }),
  defaultQuery: EXAMPLE_QUERY,
  shouldPersistHeaders: false,
};
if (token) {
  props.defaultHeaders = JSON.stringify({ Authorization: `Bearer ${token}` }, null, 2);
  props.defaultEditorToolsVisibility = "headers";
}
ReactDOM.createRoot(document.getElementById("graphiql")).render(React.createElement(GraphiQL, props));
