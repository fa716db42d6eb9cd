/**
 * Preloaded into a Node relay (`node --import bench/lib/heap-meter.mjs ...`) to count the
 * bytes it allocates on the JS heap over a window the benchmark chooses: the first SIGUSR2
 * starts a `v8.GCProfiler`, the second stops it and writes `{ allocatedBytes, gcs, gcMs }`
 * to the file named by HEAP_METER_OUT.
 *
 * Allocated bytes = what the heap grew by between collections, summed: for each GC, used
 * heap before it minus used heap after the previous one (or at the start), plus the growth
 * after the last one. Every byte a JS object, string or Buffer handle takes on the V8 heap
 * is counted once, when it is allocated; the backing stores of Buffers (off-heap
 * ArrayBuffers, e.g. Node's 8 KiB pool slabs and TLS read buffers) are not, and the
 * externalMemory growth is reported beside it only as a hint.
 */
import { writeFileSync } from 'node:fs';
import { GCProfiler, getHeapStatistics } from 'node:v8';

let profiler;
let start;
process.on('SIGUSR2', () => {
  if (!profiler) {
    profiler = new GCProfiler();
    start = getHeapStatistics();
    profiler.start();
    return;
  }
  const { statistics } = profiler.stop();
  const end = getHeapStatistics();
  profiler = undefined;
  let allocated = 0;
  let prev = start.used_heap_size;
  let gcMs = 0;
  for (const s of statistics) {
    allocated += s.beforeGC.heapStatistics.usedHeapSize - prev;
    prev = s.afterGC.heapStatistics.usedHeapSize;
    gcMs += s.cost / 1000;
  }
  allocated += end.used_heap_size - prev;
  writeFileSync(process.env.HEAP_METER_OUT, JSON.stringify({ allocatedBytes: allocated, gcs: statistics.length, gcMs, externalGrowth: end.external_memory - start.external_memory }));
});
