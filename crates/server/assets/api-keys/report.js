// "Download report": the tenant's credential report (CSV) as a file.

import { Q_REPORT, gql } from "./graphql.js";
import { $, busy } from "./ui.js";

export function initReport(onError) {
  $("download-report").addEventListener("click", async (event) => {
    await busy([event.currentTarget], async () => {
      try {
        const csv = (await gql(Q_REPORT)).apiKeyCredentialReport;
        const url = URL.createObjectURL(new Blob([csv], { type: "text/csv;charset=utf-8" }));
        const link = document.createElement("a");
        link.href = url;
        link.download = `api-keys-report-${new Date().toISOString().slice(0, 10)}.csv`;
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10_000);
      } catch (error) {
        onError(error);
      }
    });
  });
}
