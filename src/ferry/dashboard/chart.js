// Completed and failed jobs per second over the last five minutes, drawn on a canvas.

const SECONDS = 300;

export class ThroughputChart {
  constructor(canvas) {
    this.canvas = canvas;
    this.completed = new Map(); // second -> count
    this.failed = new Map();
    setInterval(() => this.draw(), 1000);
    this.draw();
  }

  count(status, at) {
    const series = status === "COMPLETED" ? this.completed : status === "FAILED" ? this.failed : null;
    if (!series) return;
    const second = Math.floor(Date.parse(at) / 1000);
    series.set(second, (series.get(second) || 0) + 1);
    if (!this.pending) this.pending = setTimeout(() => { this.pending = null; this.draw(); }, 250);
  }

  draw() {
    const now = Math.floor(Date.now() / 1000);
    for (const series of [this.completed, this.failed]) {
      for (const second of series.keys()) if (second <= now - SECONDS) series.delete(second);
    }
    const ratio = window.devicePixelRatio || 1;
    const width = this.canvas.clientWidth || 600;
    const height = this.canvas.clientHeight || 120;
    this.canvas.width = width * ratio;
    this.canvas.height = height * ratio;
    const context = this.canvas.getContext("2d");
    context.scale(ratio, ratio);
    context.clearRect(0, 0, width, height);
    let peak = 1;
    for (const series of [this.completed, this.failed]) for (const value of series.values()) peak = Math.max(peak, value);
    const x = (second) => ((second - (now - SECONDS)) / SECONDS) * width;
    const y = (value) => height - 14 - (value / peak) * (height - 24);
    const style = getComputedStyle(document.documentElement);
    for (const [series, color] of [[this.failed, "--failed"], [this.completed, "--completed"]]) {
      context.beginPath();
      context.strokeStyle = style.getPropertyValue(color).trim();
      context.lineWidth = 1.5;
      for (let second = now - SECONDS + 1; second <= now; second++) {
        const point = [x(second), y(series.get(second) || 0)];
        second === now - SECONDS + 1 ? context.moveTo(...point) : context.lineTo(...point);
      }
      context.stroke();
    }
    context.fillStyle = style.getPropertyValue("--muted").trim();
    context.font = "11px system-ui";
    context.fillText(`${peak}/s`, 4, 11);
    context.fillText("-5 min", 4, height - 2);
    context.fillText("now", width - 24, height - 2);
  }
}
