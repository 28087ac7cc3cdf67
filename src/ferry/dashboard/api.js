// The REST API, as the dashboard uses it. Errors become ApiError with the
// server's message and, for validation errors, each field's problem.

export class ApiError extends Error {
  constructor(status, body) {
    const details = (body && body.extra) || [];
    const lines = Array.isArray(details)
      ? details.map((item) => (item.key ? `${item.key}: ${item.message}` : item.message))
      : [];
    super([(body && body.detail) || `HTTP ${status}`, ...lines].join("\n"));
    this.status = status;
  }
}

// With FERRY_AUTH=on every call carries the key; a 401 asks the page for one.
let apiKey = localStorage.getItem("ferry.key") || "";

export function useKey(key) {
  apiKey = key;
  localStorage.setItem("ferry.key", key);
}

export const currentKey = () => apiKey;

async function call(method, path, body) {
  const options = { method, headers: {} };
  if (apiKey) options.headers.Authorization = `Bearer ${apiKey}`;
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (response.status === 401) window.dispatchEvent(new Event("ferry:key-needed"));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== "" && value !== null && value !== undefined) search.set(key, value);
  }
  return search.toString();
}

export const api = {
  listJobs: (params) => call("GET", `/jobs?${query(params)}`),
  stats: (tenantId) => call("GET", `/jobs/stats?${query({ tenantId })}`),
  jobTypes: () => call("GET", "/job-types"),
  getJob: (id) => call("GET", `/jobs/${id}`),
  createJob: (spec) => call("POST", "/jobs", spec),
  retry: (id) => call("POST", `/jobs/${id}/retry`),
  cancel: (id) => call("POST", `/jobs/${id}/cancel`),
  remove: (id) => call("DELETE", `/jobs/${id}`),
  listSchedules: (tenantId) => call("GET", `/schedules?${query({ tenantId, limit: 100 })}`),
};
