(function(){
  var es=new EventSource('/api/v1/jobs/events');
  es.addEventListener('running',function(e){
    JSON.parse(e.data).forEach(function(j){
      var row=document.getElementById('job-'+j.id); if(!row||!j.progress)return;
      var p=j.progress.percent; if(typeof p!=='number')return;
      row.querySelector('.bar>div').style.width=Math.max(0,Math.min(100,p))+'%';
      row.querySelector('.pct').textContent=p.toFixed(0)+'%'+(j.progress.speed?' at '+j.progress.speed:'');
    });
  });
})();
